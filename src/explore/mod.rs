//! Exploration: swarm fuzzing, failure files, shrinking, planted-bug hunts.
pub mod fuzz;
pub mod hunt;
pub mod shrink;
pub mod swarm;

use std::path::{Path, PathBuf};

use crate::scenario::Scenario;
use crate::scenario::parse::scenario_to_toml;

/// Saves `sc` (which must carry the failing seed as its `seed`) as
/// `<dir>/<stem>-<seed>.toml`, the stem made from its name by `file_stem`:
/// a self-contained file `distsync run` replays.
pub fn save_failure(sc: &Scenario, dir: &Path) -> std::io::Result<PathBuf> {
    save_failure_with_note(sc, dir, None)
}

/// Saves `sc` as `save_failure` does, with `note` (if any) at the top of
/// the file as TOML comments: why it was saved and how to replay it.
pub fn save_failure_with_note(
    sc: &Scenario,
    dir: &Path,
    note: Option<&str>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-{}.toml", file_stem(&sc.name), sc.seed));
    let comments: String = note
        .into_iter()
        .flat_map(str::lines)
        .map(|l| {
            format!(
                "# {}\n",
                l.replace("THIS_FILE", &path.display().to_string())
            )
        })
        .collect();
    std::fs::write(&path, comments + &scenario_to_toml(sc))?;
    Ok(path)
}

/// Longest name kept whole in a file name: with the seed, the hash and the
/// extension a file name stays far below the usual 255-byte limit.
const MAX_STEM: usize = 64;

/// A file name stem for a scenario `name`: the name itself when it is
/// short and made of `[A-Za-z0-9_-]` (so `leader-crash` gives
/// `leader-crash-7.toml`); otherwise its first `MAX_STEM` safe characters
/// (others become `_`) followed by `-h` and 8 hex digits of a hash of the
/// whole name, so two long names sharing a beginning still get two files.
pub fn file_stem(name: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !name.is_empty() && name.len() <= MAX_STEM && name.chars().all(safe) {
        return name.to_string();
    }
    let kept: String = name
        .chars()
        .take(MAX_STEM)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{kept}-h{:08x}", hash >> 32)
}

/// Checks that files can be created in `dir`, by creating it if missing
/// and writing and removing a probe file: a sweep learns before its first
/// seed, not after its last, that it could not save what it finds. Folders
/// it created are removed again, so a sweep that saves nothing leaves
/// nothing behind.
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    // Deepest first, as they must be removed.
    let created: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    let probe = dir.join(format!(".distsync-probe-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    for p in created {
        // Best effort: a folder something else wrote into in the meantime stays.
        let _ = std::fs::remove_dir(p);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_kept_and_others_made_safe_short_and_distinct() {
        assert_eq!(file_stem("leader-crash"), "leader-crash");
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let (a, b) = (file_stem(&long_a), file_stem(&long_b));
        assert_ne!(a, b, "a shared beginning must not give the same file");
        assert!(a.len() <= MAX_STEM + 10, "{a}");
        assert!(a.starts_with(&"a".repeat(MAX_STEM)), "{a}");
        let odd = file_stem("../x y/é");
        assert!(odd.starts_with("___x_y__-h"), "{odd}");
        assert!(!odd.contains('/') && !odd.contains('.'), "{odd}");
        assert!(file_stem("").starts_with("-h"));
        assert_eq!(file_stem(&long_a), a, "the same name gives the same stem");
    }

    #[test]
    fn a_writable_folder_is_checked_without_leaving_anything_behind() {
        let top = std::env::temp_dir().join(format!("distsync-probe-{}", std::process::id()));
        let dir = top.join("a/b");
        check_writable(&dir).expect("a temporary folder is writable");
        assert!(!top.exists(), "the folders the check made are removed");
        std::fs::create_dir_all(&dir).unwrap();
        check_writable(&dir).unwrap();
        assert!(dir.exists(), "a folder that was there stays");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&top).unwrap();
        assert!(check_writable(Path::new("/dev/full/x")).is_err());
    }

    #[test]
    fn a_long_name_is_saved_under_a_short_file_name() {
        let dir = std::env::temp_dir().join(format!("distsync-stem-{}", std::process::id()));
        let mut sc = crate::scenario::parse::parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"1s\"\n",
            "t.toml",
        )
        .unwrap();
        sc.name = "n".repeat(400);
        sc.seed = 9;
        let p = save_failure(&sc, &dir).expect("a long name still saves");
        let file = p.file_name().unwrap().to_str().unwrap();
        assert!(file.len() < 100 && file.ends_with("-9.toml"), "{file}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
