//! The HTTP API's OpenAPI 3.1 description, built here next to the router
//! so that the two are reviewed together, and written to
//! docs/api_spec.yaml. Tests keep the three in step: the file must be
//! exactly what `yaml(&spec())` prints, and every path and method the
//! spec lists must be served (and no other method on that path), on a
//! live test cluster.

use serde_json::{Map, Value, json};

/// The largest unsigned 32- and 64-bit integers, the API's key, lock,
/// value and session ranges.
const U32_MAX: u64 = u32::MAX as u64;

fn u32_schema() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": U32_MAX})
}

fn u64_schema() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// A response with a JSON body of `schema`.
fn answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": json_content(schema)})
}

fn error(description: &str) -> Value {
    answer(description, schema_ref("Error"))
}

/// The answers every route may give besides its own: auth, overload,
/// shutdown.
fn common(responses: &mut Map<String, Value>) {
    responses.insert(
        "401".into(),
        error("API_TOKEN is set and the request has no or another bearer token"),
    );
    responses.insert(
        "503".into(),
        error("no leader known, leader's address unknown, the node is busy or stopping, or (a write) the outcome is open: retry"),
    );
}

/// The answers of a route only the leader serves.
fn leader_only(responses: &mut Map<String, Value>) {
    responses.insert(
        "307".into(),
        json!({
            "description": "this node is a follower: the same request to the leader",
            "headers": {"Location": {"description": "the same path on the leader", "schema": {"type": "string"}}},
            "content": json_content(schema_ref("Error")),
        }),
    );
    responses.insert(
        "504".into(),
        error("no answer from the cluster in time; a write's outcome is unknown"),
    );
}

/// One operation: its summary, parameters, optional JSON body and
/// responses (the common ones added).
fn operation(
    summary: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    mut responses: Map<String, Value>,
    leader: bool,
) -> Value {
    common(&mut responses);
    if leader {
        leader_only(&mut responses);
    }
    if !parameters.is_empty() || body.is_some() {
        responses.insert(
            "400".into(),
            error("a parameter or the body is not what this operation takes; the message says what was expected"),
        );
    }
    let mut op = Map::new();
    op.insert("summary".into(), json!(summary));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(schema) = body {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": json_content(schema)}),
        );
        responses.insert("413".into(), error("the body is over 64 KiB"));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn responses(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(code, v)| (code.to_owned(), v))
        .collect()
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn closed_object(required: &[&str], properties: Value) -> Value {
    let mut o = object(required, properties);
    o["additionalProperties"] = json!(false);
    o
}

fn schemas() -> Value {
    let node_name = json!({"type": "string", "pattern": "^n[0-9]+$"});
    let mode = json!({"type": "string", "enum": ["shared", "exclusive"]});
    json!({
        "Error": object(&["error", "message"], json!({
            "error": {"type": "string", "description": "a stable code (docs/deploy.md lists them)"},
            "message": {"type": "string", "description": "what went wrong and what was expected"},
            "cycle": {"type": "array", "items": u64_schema(), "description": "with `deadlock`: the sessions of the wait-for cycle"},
        })),
        "Health": object(
            &["node", "role", "term", "leader", "commit_index", "applied_index", "last_index", "snapshot_index", "wal"],
            json!({
                "node": node_name,
                "role": {"type": "string", "enum": ["follower", "precandidate", "candidate", "leader"]},
                "term": u64_schema(),
                "leader": {"type": ["string", "null"], "pattern": "^n[0-9]+$"},
                "commit_index": u64_schema(),
                "applied_index": u64_schema(),
                "last_index": u64_schema(),
                "snapshot_index": u64_schema(),
                "wal": object(&["syncs", "fsyncs", "entries"], json!({
                    "syncs": u64_schema(), "fsyncs": u64_schema(), "entries": u64_schema(),
                })),
            }),
        ),
        "Leader": object(&["leader", "leader_url", "term", "this_node", "role"], json!({
            "leader": {"type": ["string", "null"]},
            "leader_url": {"type": ["string", "null"]},
            "term": u64_schema(),
            "this_node": {"type": "string"},
            "role": {"type": "string"},
        })),
        "LogPage": object(&["first_index", "last_index", "commit_index", "entries"], json!({
            "first_index": u64_schema(),
            "last_index": u64_schema(),
            "commit_index": u64_schema(),
            "entries": {"type": "array", "items": object(&["index", "term", "command"], json!({
                "index": u64_schema(),
                "term": u64_schema(),
                "command": object(&["type"], json!({
                    "type": {"type": "string", "enum": ["noop", "put", "delete", "lock", "ring"]},
                })),
            }))},
        })),
        "KeyValue": object(&["key", "value"], json!({"key": u32_schema(), "value": u64_schema()})),
        "Deleted": object(&["key", "deleted"], json!({"key": u32_schema(), "deleted": {"const": true}})),
        "PutBody": closed_object(&["value"], json!({"value": u64_schema()})),
        "OpenBody": closed_object(&[], json!({"ttl_ms": {"type": "integer", "minimum": 100, "maximum": 3_600_000}})),
        "Session": object(&["session", "ttl_ms"], json!({"session": u64_schema(), "ttl_ms": u64_schema()})),
        "Alive": object(&["session", "alive"], json!({"session": u64_schema(), "alive": {"const": true}})),
        "Closed": object(&["session", "closed"], json!({"session": u64_schema(), "closed": {"const": true}})),
        "AcquireBody": closed_object(&["session", "lock"], json!({
            "session": u64_schema(),
            "lock": u32_schema(),
            "mode": mode,
            "wait_ms": {"type": "integer", "minimum": 0, "maximum": 60_000, "description": "0: fail at once instead of queueing; default 10000"},
        })),
        "Granted": object(&["session", "lock", "mode", "token", "holds"], json!({
            "session": u64_schema(), "lock": u32_schema(), "mode": mode,
            "token": u64_schema(), "holds": u32_schema(),
        })),
        "ReleaseBody": closed_object(&["session", "lock"], json!({"session": u64_schema(), "lock": u32_schema()})),
        "Released": object(&["session", "lock", "holds"], json!({
            "session": u64_schema(), "lock": u32_schema(), "holds": u32_schema(),
        })),
        "Lock": object(&["lock", "holders", "waiters", "last_token"], json!({
            "lock": u32_schema(),
            "holders": {"type": "array", "items": object(&["session", "mode", "holds", "token"], json!({
                "session": u64_schema(), "mode": mode, "holds": u32_schema(), "token": u64_schema(),
            }))},
            "waiters": {"type": "array", "items": object(&["session", "mode"], json!({
                "session": u64_schema(), "mode": mode,
            }))},
            "last_token": u64_schema(),
        })),
        "WaitFor": object(&["edges", "waiting"], json!({
            "edges": {"type": "array", "items": object(&["waiter", "holder"], json!({
                "waiter": u64_schema(), "holder": u64_schema(),
            }))},
            "waiting": {"type": "array", "items": object(&["session", "lock"], json!({
                "session": u64_schema(), "lock": u32_schema(),
            }))},
        })),
        "ProduceBody": closed_object(&["producer", "first_seq", "messages"], json!({
            "producer": u32_schema(),
            "first_seq": {"type": "integer", "minimum": 1, "maximum": u64::MAX},
            "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string"}},
            "partition": {"type": "integer", "minimum": 0, "maximum": crate::real::PARTITIONS_PER_QUEUE - 1},
        })),
        "Produced": object(&["partition", "stored", "duplicate"], json!({
            "partition": u32_schema(), "stored": u32_schema(), "duplicate": u32_schema(),
        })),
        "ConsumeBody": closed_object(&["consumer"], json!({
            "consumer": u32_schema(),
            "max": {"type": "integer", "minimum": 1, "maximum": 100},
            "partition": {"type": "integer", "minimum": 0, "maximum": crate::real::PARTITIONS_PER_QUEUE - 1},
            "wait_ms": {"type": "integer", "minimum": 0, "maximum": 30_000},
        })),
        "Delivered": object(&["messages"], json!({
            "messages": {"type": "array", "items": object(
                &["partition", "id", "producer", "seq", "body", "attempt"],
                json!({
                    "partition": u32_schema(), "id": {"type": "string"}, "producer": u32_schema(),
                    "seq": u64_schema(), "body": {"type": "string"}, "attempt": u32_schema(),
                }),
            )},
        })),
        "SettleBody": closed_object(&["partition", "ids"], json!({
            "partition": {"type": "integer", "minimum": 0, "maximum": crate::real::PARTITIONS_PER_QUEUE - 1},
            "ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"}},
        })),
        "Acked": object(&["partition", "acked"], json!({"partition": u32_schema(), "acked": u32_schema()})),
        "Nacked": object(&["partition", "nacked"], json!({"partition": u32_schema(), "nacked": u32_schema()})),
        "Metrics": object(&["metrics"], json!({
            "metrics": {"type": "array", "items": object(&["name", "labels", "value"], json!({
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "value": {"type": "number"},
            }))},
        })),
    })
}

fn lock_failures() -> Vec<(&'static str, Value)> {
    vec![
        (
            "403",
            error("`not_owner`: the session does not hold the lock"),
        ),
        ("404", error("`no_session`: no such session")),
        (
            "409",
            error(
                "`would_block`, `already_waiting`, `reentry_limit`, `deadlock` (with `cycle`) or `timed_out`",
            ),
        ),
        (
            "410",
            error("`session_closed` or `session_expired`: the session ended"),
        ),
    ]
}

fn paths() -> Value {
    let key = path_param("key", u32_schema(), "the key");
    let session = path_param("id", u64_schema(), "the session id");
    let mut p = Map::new();
    let mut add = |path: &str, method: &str, mut op: Value| {
        op["operationId"] = json!(operation_id(method, path));
        p.entry(path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item")
            .insert(method.to_owned(), op);
    };
    add(
        "/health",
        "get",
        operation(
            "The node's role, term, leader and indexes (never needs the token)",
            vec![],
            None,
            responses(vec![(
                "200",
                answer("the node's state", schema_ref("Health")),
            )]),
            false,
        ),
    );
    add(
        "/raft/leader",
        "get",
        operation(
            "Who leads, as this node knows",
            vec![],
            None,
            responses(vec![(
                "200",
                answer("the leader, or null", schema_ref("Leader")),
            )]),
            false,
        ),
    );
    add(
        "/raft/log",
        "get",
        operation(
            "A page of this node's Raft log",
            vec![
                query_param(
                    "from",
                    u64_schema(),
                    "the first index (default: the first held)",
                ),
                query_param(
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 1000}),
                    "at most this many entries (default 100)",
                ),
            ],
            None,
            responses(vec![("200", answer("the entries", schema_ref("LogPage")))]),
            false,
        ),
    );
    add(
        "/kv/{key}",
        "get",
        operation(
            "Read a key (linearizable)",
            vec![key.clone()],
            None,
            responses(vec![
                ("200", answer("the value", schema_ref("KeyValue"))),
                ("404", error("the key has no value")),
            ]),
            true,
        ),
    );
    add(
        "/kv/{key}",
        "put",
        operation(
            "Write a key; answered once committed and applied",
            vec![key.clone()],
            Some(schema_ref("PutBody")),
            responses(vec![("200", answer("written", schema_ref("KeyValue")))]),
            true,
        ),
    );
    add(
        "/kv/{key}",
        "delete",
        operation(
            "Delete a key; answered once committed",
            vec![key],
            None,
            responses(vec![(
                "200",
                answer("deleted (also when it had no value)", schema_ref("Deleted")),
            )]),
            true,
        ),
    );
    let mut opened = answer("the session", schema_ref("Session"));
    // What a session id is for, so a client (or a fuzzer) can follow on.
    let by_id =
        |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/session"}});
    opened["links"] = json!({
        "KeepAlive": by_id("post_locks_sessions_id_keepalive"),
        "Close": by_id("delete_locks_sessions_id"),
    });
    add(
        "/locks/sessions",
        "post",
        operation(
            "Open a lock session with a lease (the body may be left out)",
            vec![],
            Some(schema_ref("OpenBody")),
            responses(vec![("201", opened)]),
            true,
        ),
    );
    add(
        "/locks/sessions/{id}/keepalive",
        "post",
        operation(
            "Renew a session's lease",
            vec![session.clone()],
            None,
            responses(vec![
                ("200", answer("renewed", schema_ref("Alive"))),
                (
                    "404",
                    error("`no_session`: the session ended or never existed"),
                ),
            ]),
            true,
        ),
    );
    add(
        "/locks/sessions/{id}",
        "delete",
        operation(
            "Close a session, releasing its locks",
            vec![session],
            None,
            {
                let mut r = responses(lock_failures());
                r.insert("200".into(), answer("closed", schema_ref("Closed")));
                r
            },
            true,
        ),
    );
    add(
        "/locks/acquire",
        "post",
        operation(
            "Take a lock; long-polls up to wait_ms in the lock's queue",
            vec![],
            Some(schema_ref("AcquireBody")),
            {
                let mut r = responses(lock_failures());
                r.insert(
                    "200".into(),
                    answer("granted, with the fencing token", schema_ref("Granted")),
                );
                r
            },
            true,
        ),
    );
    add(
        "/locks/release",
        "post",
        operation(
            "Give back one hold of a lock",
            vec![],
            Some(schema_ref("ReleaseBody")),
            {
                let mut r = responses(lock_failures());
                r.insert(
                    "200".into(),
                    answer("released; holds left", schema_ref("Released")),
                );
                r
            },
            true,
        ),
    );
    add(
        "/locks/wait_for",
        "get",
        operation(
            "The wait-for graph, as JSON or Graphviz",
            vec![query_param(
                "format",
                json!({"type": "string", "enum": ["json", "dot"]}),
                "json (default) or dot",
            )],
            None,
            responses(vec![(
                "200",
                json!({
                    "description": "the graph",
                    "content": {
                        "application/json": {"schema": schema_ref("WaitFor")},
                        "text/vnd.graphviz": {"schema": {"type": "string"}},
                    },
                }),
            )]),
            true,
        ),
    );
    add(
        "/locks/{name}",
        "get",
        operation(
            "A lock's holders, queue and last fencing token",
            vec![path_param("name", u32_schema(), "the lock")],
            None,
            responses(vec![("200", answer("the lock", schema_ref("Lock")))]),
            true,
        ),
    );
    add(
        "/metrics",
        "get",
        operation(
            "Prometheus metrics (with ENABLE_METRICS; never needs the token)",
            vec![query_param(
                "format",
                json!({"type": "string", "enum": ["text", "json"]}),
                "text (default, OpenMetrics) or json",
            )],
            None,
            responses(vec![
                (
                    "200",
                    json!({
                        "description": "the metrics",
                        "content": {
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                            "application/json": {"schema": schema_ref("Metrics")},
                        },
                    }),
                ),
                ("404", error("metrics are off (ENABLE_METRICS)")),
            ]),
            false,
        ),
    );
    let queue = path_param(
        "name",
        json!({"type": "integer", "minimum": 0, "maximum": crate::real::QUEUES - 1}),
        "the queue",
    );
    let queue_op = |summary: &str, body: &str, ok: Value| {
        operation(
            summary,
            vec![queue.clone()],
            Some(schema_ref(body)),
            responses(vec![
                ("200", ok),
                (
                    "404",
                    error(
                        "`no_queue`: no such queue; `queue_off`: the node serves no queue (REDIS_URL)",
                    ),
                ),
                (
                    "504",
                    error(
                        "the partition's shard did not answer in time; a produce's outcome is unknown",
                    ),
                ),
            ]),
            false,
        )
    };
    add(
        "/queue/{name}/produce",
        "post",
        queue_op(
            "Store a batch, idempotent by (producer, sequence number) in its partition",
            "ProduceBody",
            answer("stored, or already stored", schema_ref("Produced")),
        ),
    );
    add(
        "/queue/{name}/consume",
        "post",
        queue_op(
            "Take up to max messages; long-polls up to wait_ms",
            "ConsumeBody",
            answer(
                "the messages (none when the wait ran out)",
                schema_ref("Delivered"),
            ),
        ),
    );
    add(
        "/queue/{name}/ack",
        "post",
        queue_op(
            "Remove delivered messages for good",
            "SettleBody",
            answer(
                "how many were in flight and are now gone",
                schema_ref("Acked"),
            ),
        ),
    );
    add(
        "/queue/{name}/nack",
        "post",
        queue_op(
            "Give delivered messages back for redelivery (or the dead letters after the last attempt)",
            "SettleBody",
            answer("given back", schema_ref("Nacked")),
        ),
    );
    add(
        "/openapi.yaml",
        "get",
        operation(
            "This description (never needs the token)",
            vec![],
            None,
            responses(vec![(
                "200",
                json!({
                        "description": "the OpenAPI document",
                        // No schema: a client parses the YAML into a document, not a string.
                "content": {"application/yaml": {}},
                    }),
            )]),
            false,
        ),
    );
    Value::Object(p)
}

/// `get_kv_key` for `GET /kv/{key}`: unique per operation, and what the
/// links name.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// The API's OpenAPI 3.1 description.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "distsync node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One node's HTTP API: health, Raft, the key-value store and the lock service. docs/deploy.md explains each route, its errors and curl examples. Generated by src/real/http/openapi.rs; do not edit by hand.",
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API_TOKEN, when the node has one"}},
        },
        // Optional: a node without API_TOKEN wants none.
        "security": [{}, {"bearer": []}],
        "paths": paths(),
    })
}

/// `value` as block-style YAML. Strings are always double-quoted JSON
/// strings (valid YAML), so no value can be misread as another type.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(&mut out, value, 0);
    out
}

fn write_yaml(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&pad);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_child(out, v, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                write_child(out, v, indent);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

/// After `key:` or `-`: a scalar (or an empty map or list) on the same
/// line, anything else on the lines below, indented.
fn write_child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(out, v, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests;
