//! Issue 4's end-to-end sequence through the ZStack wire protocol only, on a real 3-node
//! cluster: log in, build zone → cluster → storage → offerings → L2/L3 with ranges, query with
//! conditions, change a global config, log out; the leader is killed half-way and the
//! sequence finishes through another node with no duplicate and no missing resource (the
//! image store attaches a pre-installed agent on 127.0.0.35). Also
//! the REST mirror, the error replies, and polling a job on a node other than the one that
//! accepted it.

#[path = "common/agent.rs"]
mod agent;

use std::time::Duration;
use std::time::Instant;

use agent::Agent;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::zstack_client::Submitted;
use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use serde_json::Value;

/// The tests' view of [`ZsClient`]: every transport or protocol failure is a test failure.
struct Api {
    client: ZsClient,
    http: reqwest::blocking::Client,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl Api {
    fn new() -> Self {
        let client = ZsClient::new(TIMEOUT).unwrap();
        let http = client.http().clone();
        Api { client, http }
    }

    /// POST a message; the outer envelope (or the plain-text body as a JSON string).
    fn post(&self, node: &str, body: &Value, job: Option<&str>) -> Value {
        self.client.post(node, body, job, TIMEOUT).unwrap()
    }

    /// Run a sync call.
    fn sync(
        &self,
        node: &str,
        class: &str,
        fields: Value,
        session: Option<&str>,
    ) -> (String, Value) {
        let r = self
            .client
            .sync(node, class, fields, session, TIMEOUT)
            .unwrap();
        (r.class, r.body)
    }

    /// Run an async call accepted by `node` and polled on `poll` until done.
    fn call(
        &self,
        node: &str,
        poll: &str,
        class: &str,
        fields: Value,
        session: &str,
        job: &str,
    ) -> Value {
        match self
            .client
            .submit(node, class, fields, session, job, TIMEOUT)
            .unwrap()
        {
            Submitted::Done(r) => r.body,
            Submitted::Processing(uuid) => {
                assert_eq!(uuid, job);
                let r = self
                    .client
                    .wait_job(poll, job, Instant::now() + TIMEOUT)
                    .unwrap();
                r.unwrap_or_else(|| panic!("job {job} not done on {poll}"))
                    .body
            }
        }
    }
}

fn job_uuid(n: u32) -> String {
    format!("{:032x}", 0x5e9_0000u128 + n as u128)
}

fn ok_inventory(reply: &Value) -> Value {
    assert_eq!(reply["success"], true, "{reply}");
    reply["inventory"].clone()
}

fn login(api: &Api, node: &str) -> String {
    // The admin is created by the first leader's bootstrap duty; `login` waits for it.
    api.client.login(&[node.to_string()], TIMEOUT).unwrap()
}

fn count(api: &Api, node: &str, class: &str, session: &str, conds: Value) -> u64 {
    let (_, r) = api.sync(
        node,
        class,
        json!({"conditions": conds, "count": true}),
        Some(session),
    );
    assert_eq!(r["success"], true, "{r}");
    r["total"].as_u64().unwrap()
}

#[test]
fn zstack_sequence_survives_leader_kill() {
    let mut c = Cluster::start(ClusterOpts {
        proxies: false,
        ..ClusterOpts::default()
    })
    .expect("start cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).unwrap();
    let followers: Vec<u64> = c.ids().into_iter().filter(|i| *i != leader).collect();
    let addr = |c: &Cluster, id: u64| c.node(id).http.to_string();
    let (a, b) = (addr(&c, followers[0]), addr(&c, followers[1]));
    let api = Api::new();

    // --- errors before anything else ---
    let plain = api.post(&a, &json!("not an object"), None);
    assert!(
        plain
            .as_str()
            .is_some_and(|s| s.contains("Unable to deserialize")),
        "{plain}"
    );
    let (class, r) = api.sync(
        &a,
        "org.zstack.header.zone.APIQueryZoneMsg",
        json!({"conditions": []}),
        None,
    );
    assert_eq!(class, "org.zstack.header.message.APIReply");
    assert_eq!(
        (r["success"].as_bool(), r["error"]["code"].as_str()),
        (Some(false), Some("ID.1001"))
    );
    let (_, r) = api.sync(&a, "org.zstack.Nope", json!({}), None);
    assert_eq!(r["error"]["code"], "SYS.1008");
    let (_, r) = api.sync(
        &a,
        "org.zstack.header.identity.APILogInByAccountMsg",
        json!({"accountName": "admin", "password": "wrong"}),
        None,
    );
    assert!(r["error"]["code"] == "ID.1000", "{r}");

    let s = login(&api, &a);
    // The sequence's async calls: accepted by one follower, polled on the other (or the same).
    let via_a = |class: &str, body: Value, n: u32| api.call(&a, &b, class, body, &s, &job_uuid(n));
    let via_b = |class: &str, body: Value, n: u32| api.call(&b, &a, class, body, &s, &job_uuid(n));
    let via_b_only =
        |class: &str, body: Value, n: u32| api.call(&b, &b, class, body, &s, &job_uuid(n));
    let (_, r) = api.sync(
        &b,
        "org.zstack.header.identity.APIValidateSessionMsg",
        json!({"sessionUuid": s}),
        None,
    );
    assert_eq!(
        r["validSession"], true,
        "a session made through one node is valid on another"
    );
    let (_, r) = api.sync(
        &a,
        "org.zstack.header.zone.APIQueryZoneMsg",
        json!({"conditions": [{"name": "name", "op": "~=", "value": "x"}]}),
        Some(&s),
    );
    assert_eq!(
        (r["error"]["code"].as_str(), r["error"]["details"].as_str()),
        (Some("SYS.1007"), Some("unknown QueryOp type[~=]"))
    );

    // --- the sequence, first half through follower a, polled on follower b ---
    let zone = ok_inventory(&via_a(
        "org.zstack.header.zone.APICreateZoneMsg",
        json!({"name": "zone1", "description": "test"}),
        1,
    ));
    let zone_uuid = zone["uuid"].as_str().unwrap().to_string();
    assert_eq!(zone["type"], "zstack");
    let cluster = ok_inventory(&via_a(
        "org.zstack.header.cluster.APICreateClusterMsg",
        json!({"name": "cluster1", "zoneUuid": zone_uuid, "hypervisorType": "KVM"}),
        2,
    ));
    let cluster_uuid = cluster["uuid"].as_str().unwrap().to_string();
    let ps = ok_inventory(&via_a(
        "org.zstack.storage.primary.local.APIAddLocalPrimaryStorageMsg",
        json!({"name": "local", "url": "/var/lib/zstack/local", "zoneUuid": zone_uuid}),
        3,
    ));
    let ps_uuid = ps["uuid"].as_str().unwrap().to_string();

    // --- kill the leader with the next call in flight; retry it elsewhere with the same job ---
    let attach_ps = json!({"primaryStorageUuid": ps_uuid, "clusterUuid": cluster_uuid});
    let mut fields = attach_ps.clone();
    fields["session"] = json!({"uuid": s});
    let in_flight = api.post(
        &a,
        &json!({"org.zstack.header.storage.primary.APIAttachPrimaryStorageToClusterMsg": fields}),
        Some(&job_uuid(4)),
    );
    c.kill9(leader).unwrap();
    let survivors = followers.clone();
    c.wait_leader_among(&survivors, Duration::from_secs(20))
        .unwrap();
    eprintln!("killed leader {leader}; in-flight answer: {in_flight}");
    let attached = via_b_only(
        "org.zstack.header.storage.primary.APIAttachPrimaryStorageToClusterMsg",
        attach_ps,
        4,
    );
    assert_eq!(attached["success"], true, "{attached}");

    // --- second half through b ---
    // The image store's agent (pre-installed: the add attaches it, connecting its directory).
    let _agent = Agent::install(
        &c.node(followers[0]).data_dir.clone(),
        &c.dir().join("agent-35"),
        "127.0.0.35",
    );
    let bs_dir = c.dir().join("bs");
    let bs = ok_inventory(&via_b(
        "org.zstack.storage.backup.imagestore.APIAddImageStoreBackupStorageMsg",
        json!({"name": "bs", "url": bs_dir.to_str().unwrap(), "hostname": "127.0.0.35", "username": "root", "password": "password", "sshPort": 22}),
        5,
    ));
    assert_eq!(bs["status"], "Connected", "{bs}");
    let bs_uuid = bs["uuid"].as_str().unwrap().to_string();
    let r = via_b(
        "org.zstack.header.storage.backup.APIAttachBackupStorageToZoneMsg",
        json!({"backupStorageUuid": bs_uuid, "zoneUuid": zone_uuid}),
        6,
    );
    assert_eq!(r["success"], true, "{r}");
    ok_inventory(&via_b(
        "org.zstack.header.configuration.APICreateInstanceOfferingMsg",
        json!({"name": "small", "cpuNum": 1, "memorySize": 1073741824u64}),
        7,
    ));
    ok_inventory(&via_b(
        "org.zstack.header.configuration.APICreateDiskOfferingMsg",
        json!({"name": "10G", "diskSize": 10737418240u64}),
        8,
    ));
    let l2 = ok_inventory(&via_b(
        "org.zstack.header.network.l2.APICreateL2NoVlanNetworkMsg",
        json!({"name": "l2", "zoneUuid": zone_uuid, "physicalInterface": "eth0"}),
        9,
    ));
    let l2_uuid = l2["uuid"].as_str().unwrap().to_string();
    let r = via_b(
        "org.zstack.header.network.l2.APIAttachL2NetworkToClusterMsg",
        json!({"l2NetworkUuid": l2_uuid, "clusterUuid": cluster_uuid}),
        10,
    );
    assert_eq!(r["success"], true, "{r}");
    let l3 = ok_inventory(&via_b(
        "org.zstack.header.network.l3.APICreateL3NetworkMsg",
        json!({"name": "l3", "l2NetworkUuid": l2_uuid}),
        11,
    ));
    let l3_uuid = l3["uuid"].as_str().unwrap().to_string();
    ok_inventory(&via_b(
        "org.zstack.header.network.l3.APIAddIpRangeMsg",
        json!({"l3NetworkUuid": l3_uuid, "name": "r1", "startIp": "10.0.0.10", "endIp": "10.0.0.100", "netmask": "255.255.255.0", "gateway": "10.0.0.1"}),
        12,
    ));
    // An overlapping range on the same L2 is refused with the exact code.
    let r = via_b(
        "org.zstack.header.network.l3.APIAddIpRangeMsg",
        json!({"l3NetworkUuid": l3_uuid, "name": "r2", "startIp": "10.0.0.50", "endIp": "10.0.0.60", "netmask": "255.255.255.0", "gateway": "10.0.0.1"}),
        13,
    );
    assert_eq!(r["success"], false, "{r}");
    let gc = ok_inventory(&via_b(
        "org.zstack.core.config.APIUpdateGlobalConfigMsg",
        json!({"category": "identity", "name": "session.timeout", "value": "3600"}),
        14,
    ));
    assert_eq!(gc["value"], "3600");

    // --- every resource exactly once, seen from both survivors ---
    for node in [&a, &b] {
        let by_zone = json!([{"name": "zoneUuid", "op": "=", "value": zone_uuid}]);
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.zone.APIQueryZoneMsg",
                &s,
                json!([])
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.cluster.APIQueryClusterMsg",
                &s,
                by_zone.clone()
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.storage.primary.APIQueryPrimaryStorageMsg",
                &s,
                by_zone.clone()
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.storage.backup.APIQueryBackupStorageMsg",
                &s,
                json!([])
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.configuration.APIQueryInstanceOfferingMsg",
                &s,
                json!([])
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.configuration.APIQueryDiskOfferingMsg",
                &s,
                json!([])
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.network.l2.APIQueryL2NetworkMsg",
                &s,
                by_zone.clone()
            ),
            1
        );
        assert_eq!(
            count(
                &api,
                node,
                "org.zstack.header.network.l3.APIQueryL3NetworkMsg",
                &s,
                json!([{"name": "name", "op": "like", "value": "l%"}])
            ),
            1
        );
        let (_, r) = api.sync(
            node,
            "org.zstack.header.storage.primary.APIQueryPrimaryStorageMsg",
            json!({"conditions": [{"name": "uuid", "op": "=", "value": ps_uuid}]}),
            Some(&s),
        );
        assert_eq!(
            r["inventories"][0]["attachedClusterUuids"],
            json!([cluster_uuid]),
            "{r}"
        );
        let (_, r) = api.sync(node, "org.zstack.core.config.APIQueryGlobalConfigMsg",
            json!({"conditions": [{"name": "category", "op": "=", "value": "identity"}, {"name": "name", "op": "=", "value": "session.timeout"}]}), Some(&s));
        assert_eq!(r["inventories"][0]["value"], "3600");
    }

    // --- the REST mirror on the same state ---
    let rest = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = api
            .http
            .request(method, format!("http://{a}/zstack{path}"))
            .header("Authorization", format!("OAuth {s}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let (st, v) = rest(
        reqwest::Method::GET,
        &format!("/v1/zones/{zone_uuid}"),
        None,
    );
    assert_eq!(
        (st, v["inventories"][0]["name"].as_str()),
        (200, Some("zone1")),
        "{v}"
    );
    let (st, v) = rest(
        reqwest::Method::POST,
        "/v1/zones",
        Some(json!({"params": {"name": "zone2"}})),
    );
    assert_eq!(st, 202, "{v}");
    let location = v["location"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.http.get(&location).send().unwrap();
        if r.status().as_u16() == 200 {
            let v: Value = r.json().unwrap();
            assert_eq!(v["inventory"]["name"], "zone2");
            break;
        }
        assert_eq!(r.status().as_u16(), 202);
        assert!(Instant::now() < deadline, "REST job never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, _) = rest(reqwest::Method::GET, "/v1/openapi.json", None);
    assert_eq!(st, 200);
    let no_auth = api
        .http
        .get(format!("http://{a}/zstack/v1/zones"))
        .send()
        .unwrap();
    assert_eq!(no_auth.status().as_u16(), 400);

    // --- sliding sessions: with a 10 s timeout, a session in use outlives it ---
    let gc = ok_inventory(&via_b(
        "org.zstack.core.config.APIUpdateGlobalConfigMsg",
        json!({"category": "identity", "name": "session.timeout", "value": "10"}),
        15,
    ));
    assert_eq!(gc["value"], "10");
    let short = login(&api, &a);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        let (_, r) = api.sync(
            &b,
            "org.zstack.header.zone.APIQueryZoneMsg",
            json!({"conditions": [], "count": true}),
            Some(&short),
        );
        assert_eq!(
            r["success"],
            true,
            "an active session expired after {:?}: {r}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(1500));
    }

    // --- log out: the session is gone everywhere ---
    let (_, r) = api.sync(
        &b,
        "org.zstack.header.identity.APILogOutMsg",
        json!({"sessionUuid": s}),
        None,
    );
    assert_eq!(r["success"], true);
    let (_, r) = api.sync(
        &a,
        "org.zstack.header.zone.APIQueryZoneMsg",
        json!({"conditions": []}),
        Some(&s),
    );
    assert_eq!(r["error"]["code"], "ID.1001");
}
