//! Exploration: swarm fuzzing, failure files, shrinking, planted-bug hunts.
pub mod fuzz;
pub mod hunt;
pub mod shrink;
pub mod swarm;

use std::path::{Path, PathBuf};

use crate::scenario::Scenario;
use crate::scenario::parse::scenario_to_toml;

/// Saves `sc` (which must carry the failing seed as its `seed`) as
/// `<dir>/<name>-<seed>.toml`: a self-contained file `distsync run` replays.
pub fn save_failure(sc: &Scenario, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-{}.toml", sc.name, sc.seed));
    std::fs::write(&path, scenario_to_toml(sc))?;
    Ok(path)
}
