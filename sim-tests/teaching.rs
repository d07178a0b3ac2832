//! The guided walkthroughs in docs/teaching/ print exactly what the
//! stepper prints for their scripts. Set DISTSYNC_BLESS=1 to rewrite the
//! pages' output blocks after a deliberate change.

use std::path::Path;

use distsync::scenario::load_scenario;
use distsync::step::run_script;

/// A walkthrough page: its scenario and seed, script, and printed output.
struct Page {
    scenario: String,
    seed: u64,
    /// Planted bugs switched on (`bug NAME` after the seed).
    bugs: Vec<String>,
    script: String,
    output: String,
}

fn block(text: &str, info: &str) -> Option<(usize, usize)> {
    let open = format!("```{info}\n");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find("```")?;
    Some((start, end))
}

fn parse(text: &str) -> Page {
    let marker = "<!-- stepper: ";
    let head = &text[text.find(marker).expect("a stepper marker") + marker.len()..];
    let head = &head[..head.find(" -->").expect("the marker ends")];
    let words: Vec<&str> = head.split_whitespace().collect();
    assert!(
        words.len() >= 3 && words[1] == "seed" && words[3..].len().is_multiple_of(2),
        "`<!-- stepper: FILE seed N [bug NAME]... -->`, got `{head}`"
    );
    let bugs = words[3..]
        .chunks(2)
        .map(|w| {
            assert_eq!(w[0], "bug", "`bug NAME` after the seed, got `{head}`");
            w[1].to_string()
        })
        .collect();
    let (s, e) = block(text, "steps").expect("a steps block");
    let script = text[s..e].to_string();
    let (s, e) = block(text, "console").expect("a console block");
    Page {
        scenario: words[0].to_string(),
        seed: words[2].parse().expect("a seed"),
        bugs,
        script,
        output: text[s..e].to_string(),
    }
}

#[test]
fn every_walkthrough_prints_what_the_stepper_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs/teaching"))
        .expect("docs/teaching exists")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "md") && p.file_name().unwrap() != "README.md"
        })
        .collect();
    pages.sort();
    assert!(pages.len() >= 6, "the walkthroughs are there");
    let bless = std::env::var_os("DISTSYNC_BLESS").is_some();
    for path in pages {
        let text = std::fs::read_to_string(&path).unwrap();
        let page = parse(&text);
        let mut sc = load_scenario(&root.join(&page.scenario)).expect("the scenario loads");
        for b in &page.bugs {
            sc.bugs.enable(b).expect("a catalogue bug");
        }
        let printed = run_script(&sc, page.seed, &page.script, "script").expect("the script runs");
        if bless {
            let (s, e) = block(&text, "console").unwrap();
            let new = format!("{}{}{}", &text[..s], printed, &text[e..]);
            std::fs::write(&path, new).unwrap();
            continue;
        }
        assert_eq!(
            page.output,
            printed,
            "{} no longer matches the stepper (DISTSYNC_BLESS=1 rewrites it)",
            path.display()
        );
    }
}

#[test]
fn back_replays_to_the_same_state() {
    use distsync::step::{Command, Stepper};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sc = load_scenario(&root.join("scenarios/leader-crash.toml")).unwrap();
    let mut a = Stepper::new(&sc, 3);
    let mut b = Stepper::new(&sc, 3);
    a.execute(&Command::Continue(Some(200)));
    a.execute(&Command::Next);
    let (back, _) = a.execute(&Command::Back);
    b.execute(&Command::Continue(Some(199)));
    b.execute(&Command::Next);
    let (shown, _) = b.execute(&Command::Show(None));
    assert_eq!(a.events(), 200);
    assert!(back.ends_with(&shown), "{back}\n---\n{shown}");
}
