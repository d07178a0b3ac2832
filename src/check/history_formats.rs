//! Parsers for labelled history formats used to validate the linearizability checker.
//!
//! Two formats are supported, both produced by Jepsen-style test harnesses:
//!
//! * the Jepsen log of a compare-and-set register
//!   (`INFO  jepsen.util - 3 :invoke :cas [3 0]`, tab-separated), checked with
//!   [`RegisterModel`](crate::check::linearizability::RegisterModel);
//! * EDN-style key-value histories (`{:process 0, :type :invoke, :f :get, :key "7", :value nil}`),
//!   checked per key with [`KvModel`](crate::check::linearizability::KvModel).
//!
//! In both, the 1-based line number is the timestamp: the log order is the
//! real-time order the harness observed. Each `:invoke` is matched with the
//! next completion of the same process. Jepsen completion types mean:
//!
//! * `:ok` - the operation happened, with this result;
//! * `:fail` - the operation definitely did not take effect;
//! * `:info` - unknown: it may have taken effect at any time after its call,
//!   now or later. Jepsen retires such a process (the next operation of that
//!   client uses a new process number), and the operation is recorded as never
//!   returning (`ret: None`) with the model's unknown output.
//!
//! An invoke with no completion by the end of the file is treated like `:info`.

use std::collections::BTreeMap;
use std::fmt;

use crate::check::linearizability::{KvInput, KvOutput, Operation, RegisterInput, RegisterOutput};

/// Key-value operations, each with its key.
type KeyedKvOps = Vec<(String, Operation<KvInput, KvOutput>)>;

/// A malformed line: where it is and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the input.
    pub line: usize,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// The completion types of a Jepsen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            ":invoke" => Some(Kind::Invoke),
            ":ok" => Some(Kind::Ok),
            ":fail" => Some(Kind::Fail),
            ":info" => Some(Kind::Info),
            _ => None,
        }
    }
}

/// An invoked operation not yet completed: its position in the output and the invoke's line.
struct Open {
    slot: usize,
    line: usize,
}

/// A parsed operation with its partition key, or None once dropped.
type Slot<K, I, O> = Option<(K, Operation<I, O>)>;

/// Pairs invokes with completions per process; ops that are dropped become None.
struct Pairing<K, I, O> {
    slots: Vec<Slot<K, I, O>>,
    open: BTreeMap<u64, Open>,
}

impl<K, I, O> Pairing<K, I, O> {
    fn new() -> Self {
        Pairing {
            slots: Vec::new(),
            open: BTreeMap::new(),
        }
    }

    /// Records an invoke; its output is `unknown` until a completion arrives.
    fn invoke(&mut self, line: usize, key: K, op: Operation<I, O>) -> Result<(), ParseError> {
        let process = op.client;
        if let Some(prev) = self.open.get(&process) {
            return err(
                line,
                format!(
                    "process {process} invokes again, but its invoke on line {} has no completion \
                     (expected :ok, :fail or :info first)",
                    prev.line
                ),
            );
        }
        self.open.insert(
            process,
            Open {
                slot: self.slots.len(),
                line,
            },
        );
        self.slots.push(Some((key, op)));
        Ok(())
    }

    /// The open invoke of `process`, which a completion on `line` closes.
    fn complete(&mut self, line: usize, process: u64) -> Result<&mut Slot<K, I, O>, ParseError> {
        let Some(open) = self.open.remove(&process) else {
            return err(
                line,
                format!("completion for process {process}, which has no preceding :invoke"),
            );
        };
        Ok(&mut self.slots[open.slot])
    }

    fn finish(self) -> Vec<(K, Operation<I, O>)> {
        // Open invokes keep ret None and their unknown output: the same as :info.
        self.slots.into_iter().flatten().collect()
    }
}

/// Parses a Jepsen log of a single compare-and-set register (porcupine's `etcd_NNN.log`).
///
/// Op lines are `... jepsen.util - PROCESS TYPE F VALUE`, separated by tabs or
/// spaces (both occur in the data). Other lines, including non-op `jepsen.util`
/// lines and `:nemesis` lines, are skipped; a line with a numeric process and a
/// Jepsen type that does not parse is an error.
///
/// Decisions on `:fail`: a failed cas whose value is its `[old new]` pair is a
/// cas whose compare failed (`CasOk(false)`: state unchanged, and only legal if
/// the value was not `old`). A failed read or write, or a cas failed with a
/// reason keyword such as `:timed-out`, definitely did not take effect and says
/// nothing about the value, so it is dropped, as porcupine effectively does.
pub fn parse_jepsen_register_log(
    text: &str,
) -> Result<Vec<Operation<RegisterInput, RegisterOutput>>, ParseError> {
    let mut pairing: Pairing<(), RegisterInput, RegisterOutput> = Pairing::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let tokens: Vec<&str> = raw.split_whitespace().collect();
        let Some(at) = tokens.iter().position(|t| *t == "jepsen.util") else {
            continue;
        };
        let rest = &tokens[at + 1..];
        // An op line: "-", a numeric process, then a Jepsen type keyword.
        let (Some(&"-"), Some(Ok(process)), Some(kind)) = (
            rest.first(),
            rest.get(1).map(|p| p.parse::<u64>()),
            rest.get(2),
        ) else {
            continue;
        };
        let Some(kind) = Kind::parse(kind) else {
            if kind.starts_with(':') {
                return err(
                    line,
                    format!(
                        "expected :invoke, :ok, :fail or :info after process {process}, found {kind}"
                    ),
                );
            }
            continue;
        };
        let Some(&f) = rest.get(3) else {
            return err(
                line,
                "expected an operation (:read, :write or :cas) after the type",
            );
        };
        let value = rest[4..].join(" ");
        let timestamp = line as u64;
        if kind == Kind::Invoke {
            let input = match f {
                ":read" => RegisterInput::Read,
                ":write" => RegisterInput::Write(parse_int(line, &value)?),
                ":cas" => {
                    let (old, new) = parse_pair(line, &value)?;
                    RegisterInput::Cas(old, new)
                }
                _ => return err(line, format!("expected :read, :write or :cas, found {f}")),
            };
            let op = Operation {
                client: process,
                input,
                output: RegisterOutput::Unknown,
                call: timestamp,
                ret: None,
            };
            pairing.invoke(line, (), op)?;
            continue;
        }
        let slot = pairing.complete(line, process)?;
        let Some((_, op)) = slot.as_mut() else {
            return err(line, "internal: completion of a dropped operation");
        };
        let expected_f = match op.input {
            RegisterInput::Read => ":read",
            RegisterInput::Write(_) => ":write",
            RegisterInput::Cas(..) => ":cas",
        };
        if f != expected_f {
            return err(
                line,
                format!(
                    "expected a completion of {expected_f} (invoked on line {}), found {f}",
                    op.call
                ),
            );
        }
        match kind {
            // Invokes were handled above; :info leaves the op Unknown with ret None.
            Kind::Invoke | Kind::Info => {}
            Kind::Ok => {
                op.ret = Some(timestamp);
                op.output = match op.input {
                    RegisterInput::Read => RegisterOutput::ReadOk(if value == "nil" {
                        None
                    } else {
                        Some(parse_int(line, &value)?)
                    }),
                    RegisterInput::Write(v) => {
                        expect_same(line, op.call, parse_int(line, &value)? == v, &value)?;
                        RegisterOutput::WriteOk
                    }
                    RegisterInput::Cas(old, new) => {
                        expect_same(
                            line,
                            op.call,
                            parse_pair(line, &value)? == (old, new),
                            &value,
                        )?;
                        RegisterOutput::CasOk(true)
                    }
                };
            }
            Kind::Fail => match op.input {
                RegisterInput::Cas(old, new) if !value.starts_with(':') => {
                    expect_same(
                        line,
                        op.call,
                        parse_pair(line, &value)? == (old, new),
                        &value,
                    )?;
                    op.ret = Some(timestamp);
                    op.output = RegisterOutput::CasOk(false);
                }
                _ => *slot = None,
            },
        }
    }
    Ok(pairing.finish().into_iter().map(|((), op)| op).collect())
}

fn expect_same(line: usize, call_line: u64, same: bool, value: &str) -> Result<(), ParseError> {
    if same {
        Ok(())
    } else {
        err(
            line,
            format!("expected the value of the invoke on line {call_line}, found {value}"),
        )
    }
}

fn parse_int(line: usize, s: &str) -> Result<i64, ParseError> {
    s.parse()
        .or_else(|_| err(line, format!("expected an integer, found {s:?}")))
}

/// Parses a cas argument `[OLD NEW]`.
fn parse_pair(line: usize, s: &str) -> Result<(i64, i64), ParseError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map(|s| s.split_whitespace().collect::<Vec<_>>());
    match inner.as_deref() {
        Some([old, new]) => Ok((parse_int(line, old)?, parse_int(line, new)?)),
        _ => err(line, format!("expected [OLD NEW], found {s:?}")),
    }
}

// ---------------------------------------------------------------------------
// EDN-style key-value histories.

/// An EDN scalar as it appears in the history maps.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edn {
    Nil,
    Int(i64),
    Str(String),
    Keyword(String),
}

/// Parses a flat EDN map of scalars: `{:k v, :k v}` (commas are whitespace in EDN).
fn parse_edn_map(line: usize, s: &str) -> Result<Vec<(String, Edn)>, ParseError> {
    let mut chars = s.trim().chars().peekable();
    if chars.next() != Some('{') {
        return err(line, "expected a map starting with '{'");
    }
    let mut entries = Vec::new();
    let mut values: Vec<Edn> = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.peek().copied() {
            None => return err(line, "expected '}' closing the map"),
            Some('}') => {
                chars.next();
                break;
            }
            Some('"') => {
                chars.next();
                let mut out = String::new();
                loop {
                    match chars.next() {
                        None => return err(line, "expected '\"' closing a string"),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some('r') => out.push('\r'),
                            Some(c @ ('"' | '\\')) => out.push(c),
                            other => {
                                return err(line, format!("unsupported string escape \\{other:?}"));
                            }
                        },
                        Some(c) => out.push(c),
                    }
                }
                values.push(Edn::Str(out));
            }
            Some(_) => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == ',' || c == '}' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                let value = if word == "nil" {
                    Edn::Nil
                } else if let Some(k) = word.strip_prefix(':') {
                    Edn::Keyword(k.to_string())
                } else if let Ok(i) = word.parse() {
                    Edn::Int(i)
                } else {
                    return err(
                        line,
                        format!("expected nil, an integer, a string or a keyword, found {word:?}"),
                    );
                };
                values.push(value);
            }
        }
    }
    if chars.any(|c| !c.is_whitespace()) {
        return err(line, "unexpected text after the closing '}'");
    }
    if !values.len().is_multiple_of(2) {
        return err(
            line,
            "expected an even number of forms (key value pairs) in the map",
        );
    }
    let mut it = values.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let Edn::Keyword(k) = k else {
            return err(line, format!("expected a keyword as map key, found {k:?}"));
        };
        entries.push((k, v));
    }
    Ok(entries)
}

fn field<'a>(line: usize, map: &'a [(String, Edn)], name: &str) -> Result<&'a Edn, ParseError> {
    map.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .map_or_else(|| err(line, format!("expected a :{name} entry")), Ok)
}

/// Parses an EDN-style key-value history (porcupine's `kv/cNN-ok.txt`), one map per line.
///
/// Each line is `{:process P, :type T, :f F, :key "K", :value V}` with `F` one of
/// `:get`, `:put`, `:append`; blank lines and `;` comment lines are skipped, as
/// are lines whose `:process` is a keyword (e.g. `:nemesis`). Keys may be
/// strings or integers (integers become their decimal string). A get that
/// returns `nil` reads "" (the model's value of a never-written key). A
/// `:fail`ed operation did not take effect and is dropped.
pub fn parse_kv_history(text: &str) -> Result<KeyedKvOps, ParseError> {
    let mut pairing: Pairing<String, KvInput, KvOutput> = Pairing::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        let map = parse_edn_map(line, trimmed)?;
        let process = match field(line, &map, "process")? {
            Edn::Int(p) if *p >= 0 => *p as u64,
            Edn::Keyword(_) => continue,
            other => {
                return err(
                    line,
                    format!("expected a non-negative integer :process, found {other:?}"),
                );
            }
        };
        let kind = match field(line, &map, "type")? {
            Edn::Keyword(k) => Kind::parse(&format!(":{k}")),
            _ => None,
        };
        let Some(kind) = kind else {
            return err(line, "expected :type to be :invoke, :ok, :fail or :info");
        };
        let f = match field(line, &map, "f")? {
            Edn::Keyword(f) if matches!(f.as_str(), "get" | "put" | "append") => f.as_str(),
            other => {
                return err(
                    line,
                    format!("expected :f to be :get, :put or :append, found {other:?}"),
                );
            }
        };
        let key = match field(line, &map, "key")? {
            Edn::Str(k) => k.clone(),
            Edn::Int(k) => k.to_string(),
            other => {
                return err(
                    line,
                    format!("expected a string or integer :key, found {other:?}"),
                );
            }
        };
        let value = field(line, &map, "value")?;
        let string_value = || match value {
            Edn::Str(s) => Ok(s.clone()),
            other => err(
                line,
                format!("expected a string :value for :{f}, found {other:?}"),
            ),
        };
        let timestamp = line as u64;
        if kind == Kind::Invoke {
            let input = match f {
                "get" => KvInput::Get,
                "put" => KvInput::Put(string_value()?),
                _ => KvInput::Append(string_value()?),
            };
            let op = Operation {
                client: process,
                input,
                output: KvOutput::Unknown,
                call: timestamp,
                ret: None,
            };
            pairing.invoke(line, key, op)?;
            continue;
        }
        let slot = pairing.complete(line, process)?;
        let Some((op_key, op)) = slot.as_mut() else {
            return err(line, "internal: completion of a dropped operation");
        };
        let expected_f = match op.input {
            KvInput::Get => "get",
            KvInput::Put(_) => "put",
            KvInput::Append(_) => "append",
        };
        if f != expected_f || *op_key != key {
            return err(
                line,
                format!(
                    "expected a completion of :{expected_f} on key {op_key:?} (invoked on line {}), found :{f} on key {key:?}",
                    op.call
                ),
            );
        }
        match kind {
            // Invokes were handled above; :info leaves the op Unknown with ret None.
            Kind::Invoke | Kind::Info => {}
            Kind::Fail => *slot = None,
            Kind::Ok => {
                op.ret = Some(timestamp);
                op.output = match &op.input {
                    KvInput::Get => KvOutput::Get(match value {
                        Edn::Nil => String::new(),
                        _ => string_value()?,
                    }),
                    KvInput::Put(v) | KvInput::Append(v) => {
                        if let Edn::Str(s) = value
                            && s != v
                        {
                            return err(
                                line,
                                format!(
                                    "expected the value of the invoke on line {}, found {s:?}",
                                    op.call
                                ),
                            );
                        }
                        KvOutput::Ok
                    }
                };
            }
        }
    }
    Ok(pairing.finish())
}
