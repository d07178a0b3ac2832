//! Raft's messages between nodes.

use crate::kv::{Entry, Snapshot};

/// A message between Raft peers. Every message carries the sender's term.
#[derive(Clone, Debug, PartialEq)]
pub enum RaftMsg {
    /// Would you vote for me at `term`? Does not change anyone's term (thesis 9.6).
    PreVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        term: u64,
        granted: bool,
    },
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    VoteResp {
        term: u64,
        granted: bool,
    },
    /// Entries after (prev_index, prev_term); empty = heartbeat. `read_ctx`
    /// asks the follower to confirm leadership for ReadIndex reads up to it.
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        read_ctx: u64,
    },
    /// `success`: the log now matches up to `match_index`. Otherwise a hint
    /// for fast backtracking: `conflict_term` (0 = follower log too short)
    /// and the first index the follower holds of that term.
    AppendResp {
        term: u64,
        success: bool,
        match_index: u64,
        reject_index: u64,
        conflict_index: u64,
        conflict_term: u64,
        read_ctx: u64,
    },
    InstallSnapshot {
        term: u64,
        snapshot: Snapshot,
    },
}

impl RaftMsg {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            RaftMsg::PreVote { .. } => "PreVote",
            RaftMsg::PreVoteResp { .. } => "PreVoteResp",
            RaftMsg::Vote { .. } => "Vote",
            RaftMsg::VoteResp { .. } => "VoteResp",
            RaftMsg::Append { .. } => "Append",
            RaftMsg::AppendResp { .. } => "AppendResp",
            RaftMsg::InstallSnapshot { .. } => "InstallSnapshot",
        }
    }

    /// The sender's term.
    pub fn term(&self) -> u64 {
        match self {
            RaftMsg::PreVote { term, .. }
            | RaftMsg::PreVoteResp { term, .. }
            | RaftMsg::Vote { term, .. }
            | RaftMsg::VoteResp { term, .. }
            | RaftMsg::Append { term, .. }
            | RaftMsg::AppendResp { term, .. }
            | RaftMsg::InstallSnapshot { term, .. } => *term,
        }
    }
}
