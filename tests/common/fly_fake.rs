//! A stateful fake of the Fly Machines API for wiremock, answering with the real examples
//! of the Machines API docs (`../shared/fixtures/fly/docs_examples`). Shared by the compute
//! tests and the end-to-end MCP test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The Machines API docs examples.
pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/fly/docs_examples"
);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The JSON body of a docs example: the part between ```json and ``` when the example is
/// Markdown, else the whole file.
pub fn fixture(name: &str) -> String {
    // From a git worktree under `<root>/wt/<name>` the shared folder is one level further up.
    let raw = std::fs::read_to_string(format!("{FIXTURES}/{name}"))
        .or_else(|_| std::fs::read_to_string(format!("{FIXTURES_FROM_WORKTREE}/{name}")))
        .unwrap_or_else(|e| panic!("{FIXTURES}/{name}: {e}"));
    let body = match raw.find("```json") {
        Some(i) => {
            let rest = &raw[i + "```json".len()..];
            &rest[..rest.find("```").unwrap_or(rest.len())]
        }
        None => raw.as_str(),
    };
    body.trim().to_string()
}

/// [`FIXTURES`] as seen from a git worktree in `<root>/wt/<name>`.
pub const FIXTURES_FROM_WORKTREE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/fly/docs_examples"
);

/// Replace the docs' `{ /* Fly Machine Config */ }` placeholder(s) with a real config.
pub fn fill_config(text: &str, config: &Value) -> String {
    const MARK: &str = "/* Fly Machine Config */";
    let mut out = text.to_string();
    while let Some(i) = out.find(MARK) {
        let open = out[..i].rfind('{').expect("placeholder opens with {");
        let close = i + MARK.len() + out[i + MARK.len()..].find('}').expect("and closes with }");
        out.replace_range(open..=close, &config.to_string());
    }
    out
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fill_config(&fixture(name), &json!({}))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A stateful fake Machines API
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct FakeState {
    pub machines: BTreeMap<String, Value>,
    pub created: u64,
    pub create_delay: Option<Duration>,
    pub delete_delay: Option<Duration>,
    pub arrivals: Vec<(String, String, Instant)>,
}

#[derive(Clone)]
pub struct Fake {
    pub st: Arc<Mutex<FakeState>>,
    pub create_tpl: Value,
    pub get_tpl: String,
    pub stop_body: String,
    pub start_body: String,
    pub delete_body: String,
    pub wait_body: String,
    pub lease_body: String,
    pub metadata_body: String,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Create,
    List,
    Get,
    Delete,
    Stop,
    Start,
    Wait,
    Lease,
    Metadata,
    MetadataSet,
}

pub struct Handler(Fake, Kind);

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.handle(self.1, req)
    }
}

pub fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"error": "machine not found"}))
}

pub fn ok_raw(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

impl Fake {
    pub fn new() -> Self {
        Fake {
            st: Arc::default(),
            create_tpl: fixture_json("_create_resp.erb"),
            get_tpl: fixture("_machines_get_resp.erb"),
            stop_body: fixture("_stop_resp.erb"),
            start_body: fixture("_machines_start_resp.erb"),
            delete_body: fixture("_delete_resp.erb"),
            wait_body: fixture("_wait_resp.erb"),
            lease_body: fixture("_machines_lease_create_resp.erb"),
            metadata_body: fixture("_machines_metadata_get_resp.erb"),
        }
    }

    pub async fn mount(&self, server: &MockServer) {
        let m = r"^/v1/apps/[^/]+/machines";
        let routes = [
            ("POST", format!("{m}$"), Kind::Create),
            ("GET", format!("{m}$"), Kind::List),
            ("GET", format!("{m}/[^/]+$"), Kind::Get),
            ("DELETE", format!("{m}/[^/]+$"), Kind::Delete),
            ("POST", format!("{m}/[^/]+/stop$"), Kind::Stop),
            ("POST", format!("{m}/[^/]+/start$"), Kind::Start),
            ("GET", format!("{m}/[^/]+/wait$"), Kind::Wait),
            ("POST", format!("{m}/[^/]+/lease$"), Kind::Lease),
            ("DELETE", format!("{m}/[^/]+/lease$"), Kind::Lease),
            ("GET", format!("{m}/[^/]+/metadata$"), Kind::Metadata),
            (
                "POST",
                format!("{m}/[^/]+/metadata/[^/]+$"),
                Kind::MetadataSet,
            ),
        ];
        for (verb, re, kind) in routes {
            Mock::given(method(verb))
                .and(path_regex(re))
                .respond_with(Handler(self.clone(), kind))
                .mount(server)
                .await;
        }
    }

    pub fn machine_json(&self, id: &str) -> Option<Value> {
        self.st.lock().unwrap().machines.get(id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.st.lock().unwrap().machines.keys().cloned().collect()
    }

    pub fn arrivals(&self, verb: &str, suffix: &str) -> Vec<Instant> {
        self.st
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .filter(|(v, p, _)| v == verb && p.ends_with(suffix))
            .map(|(_, _, t)| *t)
            .collect()
    }

    pub fn handle(&self, kind: Kind, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        let segs: Vec<&str> = path.split('/').collect(); // "", v1, apps, app, machines, id, verb..
        let id = segs.get(5).map(|s| s.to_string()).unwrap_or_default();
        let mut st = self.st.lock().unwrap();
        st.arrivals
            .push((req.method.to_string(), path.clone(), Instant::now()));
        let set_state = |st: &mut FakeState, id: &str, s: &str| -> bool {
            match st.machines.get_mut(id) {
                Some(m) => {
                    m["state"] = json!(s);
                    true
                }
                None => false,
            }
        };
        match kind {
            Kind::Create => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                st.created += 1;
                let n = st.created;
                let id = format!("{:014x}", 0x3d8d_0000_0000u64 + n * 7919);
                let mut created = self.create_tpl.clone();
                let tpl_ip = created["private_ip"]
                    .as_str()
                    .unwrap_or("fdaa::2")
                    .to_string();
                let ip = format!("{}:{n:x}", &tpl_ip[..tpl_ip.rfind(':').unwrap()]);
                let fields = json!({
                    "id": id,
                    "name": body.get("name").cloned().unwrap_or(json!(format!("machine-{n}"))),
                    "region": body.get("region").cloned().unwrap_or(created["region"].clone()),
                    "instance_id": ulid::Ulid::new().to_string(),
                    "private_ip": ip,
                });
                for (k, v) in fields.as_object().unwrap() {
                    created[k] = v.clone();
                }
                created["config"] = body["config"].clone();
                // Stored as the docs' get example, with this machine's fields.
                let mut stored: Value =
                    serde_json::from_str(&fill_config(&self.get_tpl, &body["config"])).unwrap();
                for (k, v) in fields.as_object().unwrap() {
                    stored[k] = v.clone();
                }
                stored["state"] = created["state"].clone();
                st.machines.insert(id, stored);
                let t = ResponseTemplate::new(200).set_body_json(created);
                match st.create_delay {
                    Some(d) => t.set_delay(d),
                    None => t,
                }
            }
            Kind::List => ResponseTemplate::new(200)
                .set_body_json(Value::Array(st.machines.values().cloned().collect())),
            Kind::Get => match st.machines.get(&id) {
                Some(m) => ResponseTemplate::new(200).set_body_json(m.clone()),
                None => not_found(),
            },
            Kind::Delete => {
                if st.machines.remove(&id).is_none() {
                    return not_found();
                }
                let t = ok_raw(&self.delete_body);
                match st.delete_delay {
                    Some(d) => t.set_delay(d),
                    None => t,
                }
            }
            Kind::Stop => {
                if set_state(&mut st, &id, "stopped") {
                    ok_raw(&self.stop_body)
                } else {
                    not_found()
                }
            }
            Kind::Start => {
                if set_state(&mut st, &id, "started") {
                    ok_raw(&self.start_body)
                } else {
                    not_found()
                }
            }
            Kind::Wait => {
                let want = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| "started".into());
                if set_state(&mut st, &id, &want) {
                    ok_raw(&self.wait_body)
                } else {
                    not_found()
                }
            }
            Kind::Lease => {
                if !st.machines.contains_key(&id) {
                    return not_found();
                }
                if req.method.as_str() == "DELETE" {
                    let has_nonce = req.headers.get("fly-machine-lease-nonce").is_some();
                    if !has_nonce {
                        return ResponseTemplate::new(400)
                            .set_body_json(json!({"error": "missing lease nonce"}));
                    }
                    return ok_raw(&self.delete_body);
                }
                ResponseTemplate::new(201)
                    .set_body_raw(self.lease_body.as_bytes().to_vec(), "application/json")
            }
            Kind::Metadata => {
                if st.machines.contains_key(&id) {
                    ok_raw(&self.metadata_body)
                } else {
                    not_found()
                }
            }
            Kind::MetadataSet => {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                let key = segs.get(7).copied().unwrap_or_default().to_string();
                match (st.machines.get_mut(&id), body.get("value")) {
                    (Some(m), Some(v)) => {
                        m["config"]["metadata"][key] = v.clone();
                        ResponseTemplate::new(204)
                    }
                    (None, _) => not_found(),
                    _ => ResponseTemplate::new(400).set_body_json(json!({"error": "no value"})),
                }
            }
        }
    }
}
