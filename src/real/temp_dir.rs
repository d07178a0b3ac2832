//! Scratch directories for the real runtime's tests.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, removed on drop (also when
/// the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name says which test made it.
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("distsync-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A fresh subdirectory holding a copy of `files` (name, bytes).
    pub fn with_files(&self, sub: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
        let dir = self.0.join(sub);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create dir");
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes).expect("write file");
        }
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
