//! Same binary + scenario + seed => byte-identical trace.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use distsync::run::{RunOptions, run_scenario};
use distsync::trace::digest_trace;

use crate::common::shipped_scenarios;

#[derive(Clone, Default)]
struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_shipped_scenario_gives_the_same_trace_twice() {
    for (path, sc) in shipped_scenarios() {
        for seed in [sc.seed, 7] {
            let (a, b) = (SharedBuf::default(), SharedBuf::default());
            let ra =
                run_scenario(&sc, RunOptions::new(seed).with_trace(Box::new(a.clone()))).unwrap();
            let rb =
                run_scenario(&sc, RunOptions::new(seed).with_trace(Box::new(b.clone()))).unwrap();
            assert_eq!(
                ra.digest,
                rb.digest,
                "{} seed {seed}: digests differ",
                path.display()
            );
            assert!(
                *a.0.borrow() == *b.0.borrow(),
                "{} seed {seed}: traces differ",
                path.display()
            );
            // The printed digest is the four-lane hash of the trace bytes (docs/trace.md).
            assert_eq!(digest_trace(&a.0.borrow()), ra.digest, "{}", path.display());
        }
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let (path, sc) = shipped_scenarios()
        .into_iter()
        .find(|(p, _)| p.ends_with("lossy-network.toml"))
        .unwrap();
    let a = run_scenario(&sc, RunOptions::new(1)).unwrap();
    let b = run_scenario(&sc, RunOptions::new(2)).unwrap();
    assert_ne!(
        a.digest,
        b.digest,
        "{}: the seed must matter",
        path.display()
    );
}
