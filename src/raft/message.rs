//! Raft's messages between nodes.

use serde::{Deserialize, Serialize};

use crate::replicated::{Entry, Snapshot};

/// A message between Raft peers. Every message carries the sender's term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    Append(AppendEntries),
    AppendResp(AppendReply),
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
            RaftMsg::Append(_) => "Append",
            RaftMsg::AppendResp(_) => "AppendResp",
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
            | RaftMsg::InstallSnapshot { term, .. } => *term,
            RaftMsg::Append(m) => m.term,
            RaftMsg::AppendResp(m) => m.term,
        }
    }

    /// Whether the message may leave before its sender's writes of the same
    /// step are durable: a leader's replication may (Raft thesis 10.2.1,
    /// the leader writes to its disk in parallel with replicating), since
    /// it promises nothing about the leader's own log, and its term was
    /// made durable when the leader stood for election. Every answer and
    /// every vote request waits: each vouches for a write of its sender's
    /// (an appended entry, a vote, a term). A leader that does send early
    /// must still not count its own new entries toward a commit before
    /// they are durable; a store that syncs before the next input is
    /// handled (the real runtime's) gives that for free.
    pub fn may_precede_own_sync(&self) -> bool {
        matches!(self, RaftMsg::Append(_) | RaftMsg::InstallSnapshot { .. })
    }
}

/// AppendEntries: entries after (prev_index, prev_term); empty = heartbeat.
/// `read_ctx` asks the follower to confirm leadership for ReadIndex reads up to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppendEntries {
    pub term: u64,
    pub prev_index: u64,
    pub prev_term: u64,
    pub entries: Vec<Entry>,
    pub commit: u64,
    pub read_ctx: u64,
}

/// The answer to AppendEntries or InstallSnapshot. `success`: the log now
/// matches up to `match_index`. Otherwise a hint for fast backtracking:
/// `conflict_term` (0 = follower log too short) and the first index the
/// follower holds of that term; `reject_index` is the `prev_index` refused
/// (0 = the sender's term was stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReply {
    pub term: u64,
    pub success: bool,
    pub match_index: u64,
    pub reject_index: u64,
    pub conflict_index: u64,
    pub conflict_term: u64,
    pub read_ctx: u64,
}

impl AppendReply {
    /// The log matches the leader's up to `match_index`.
    pub fn accept(term: u64, match_index: u64, read_ctx: u64) -> Self {
        AppendReply {
            term,
            success: true,
            match_index,
            reject_index: 0,
            conflict_index: 0,
            conflict_term: 0,
            read_ctx,
        }
    }

    /// `reject_index` did not match; resume near the conflict hint.
    pub fn reject(
        term: u64,
        reject_index: u64,
        conflict_index: u64,
        conflict_term: u64,
        read_ctx: u64,
    ) -> Self {
        AppendReply {
            term,
            success: false,
            match_index: 0,
            reject_index,
            conflict_index,
            conflict_term,
            read_ctx,
        }
    }
}
