//! Scenario files: the TOML format, its validation, and the resolved model.
pub mod model;
pub mod parse;
pub mod shipped;

pub use model::*;
pub use parse::{ScenarioError, load_scenario, parse_scenario};
