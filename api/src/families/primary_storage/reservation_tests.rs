//! The volume ledger of primary storage: replays harmless, races lost cleanly, releases exact,
//! and re-measurements that keep what the volumes hold.

use proptest::prelude::*;
use serde_json::json;
use serde_json::Value;

use super::model::PrimaryStorage;
use super::reservation;
use crate::registry::serve;
use crate::resource;
use crate::resource::local_storage;
use crate::testing::matrix::Harness;
use crate::testing::u;
use crate::ApiError;
use crate::Caller;

const G: u64 = 1 << 30;

/// A measured storage (the harness's agents: 100 GiB, 60 GiB free on each host) of `kind`
/// attached to a cluster with two hosts; returns the storage and the hosts.
fn world(kind: &str) -> (Harness, String, Vec<String>) {
    let mut w = Harness::new();
    let (z, c) = w.zone_and_cluster();
    let hosts = (1..=2)
        .map(|k| {
            w.created(
                "AddKVMHost",
                json!({"clusterUuid": c, "name": format!("h{k}"), "managementIp": format!("10.0.7.{k}"),
                       "username": "root", "password": "pw"}),
            )
        })
        .collect();
    let ps = match kind {
        "LocalStorage" => w.local_ps(&z),
        _ => w.nfs_ps(&z),
    };
    w.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": ps, "clusterUuid": c}),
    );
    w.admin("ReconnectPrimaryStorage", json!({"uuid": ps}));
    (w, ps, hosts)
}

fn ctx() -> crate::ApplyCtx {
    crate::testing::ctx(1_000)
}

fn reserve(
    w: &mut Harness,
    volume: &str,
    ps: &str,
    host: Option<&str>,
    size: u64,
) -> Result<Value, ApiError> {
    serve(
        &mut w.t,
        &ctx(),
        &Caller::admin(),
        reservation::RESERVE,
        &json!({"volumeUuid": volume, "primaryStorageUuid": ps, "hostUuid": host, "size": size}),
    )
}

fn release(w: &mut Harness, volume: &str) -> Value {
    serve(
        &mut w.t,
        &ctx(),
        &Caller::admin(),
        reservation::RELEASE,
        &json!({ "volumeUuid": volume }),
    )
    .expect("release")
}

fn available(w: &Harness, ps: &str) -> u64 {
    resource::require::<PrimaryStorage>(&w.t, ps)
        .expect("ps")
        .1
        .available_capacity
}

fn host_available(w: &Harness, ps: &str, host: &str) -> u64 {
    local_storage::get(&w.t, ps, host)
        .expect("read")
        .expect("share")
        .available_capacity
}

fn set(w: &mut Harness, name: &str, value: &str) {
    w.admin(
        "UpdateGlobalConfig",
        json!({"category": "mevoco", "name": name, "value": value}),
    );
}

#[test]
fn a_reservation_takes_its_size_once_and_its_release_gives_it_back() {
    let (mut w, ps, _) = world("NFS");
    assert_eq!(
        available(&w, &ps),
        60 * G,
        "nothing held: the measured free space"
    );
    reserve(&mut w, &u(501), &ps, None, 10 * G).expect("fits");
    assert_eq!(available(&w, &ps), 50 * G);
    // The step applied again (a retry, a re-proposal): nothing more is taken.
    let tables = w.t.tables.clone();
    reserve(&mut w, &u(501), &ps, None, 10 * G).expect("replay");
    assert_eq!(w.t.tables, tables, "a replay writes nothing");
    // Physical figures stay the agents' measurement.
    let p = resource::require::<PrimaryStorage>(&w.t, &ps).unwrap().1;
    assert_eq!(
        (p.total_capacity, p.available_physical_capacity),
        (100 * G, 60 * G)
    );
    assert_eq!(release(&mut w, &u(501))["released"], true);
    assert_eq!(available(&w, &ps), 60 * G);
    assert_eq!(
        release(&mut w, &u(501))["released"],
        false,
        "released once only"
    );
    assert_eq!(available(&w, &ps), 60 * G);
}

#[test]
fn of_two_reservations_that_do_not_both_fit_the_second_is_refused_and_writes_nothing() {
    let (mut w, ps, _) = world("NFS");
    reserve(&mut w, &u(501), &ps, None, 40 * G).expect("fits");
    let tables = w.t.tables.clone();
    let e = reserve(&mut w, &u(502), &ps, None, 30 * G).expect_err("20 GiB left");
    let r = crate::plan::refusal_of(&e);
    assert_eq!(r.code, crate::wire::errors::Code::OperationFailure);
    assert!(
        r.details.contains(&format!("primary storage[uuid:{ps}]"))
            && r.details.contains("short of available capacity"),
        "{}",
        r.details
    );
    // The service's writes are discarded with the refused step (the flow runs it staged);
    // it refuses before writing anything anyway.
    assert_eq!(w.t.tables, tables);
    reserve(&mut w, &u(502), &ps, None, 20 * G).expect("exactly what is left");
    assert_eq!(available(&w, &ps), 0);
}

#[test]
fn a_resize_takes_the_difference_and_exact_records_what_the_agent_made() {
    let (mut w, ps, _) = world("NFS");
    reserve(&mut w, &u(501), &ps, None, 10 * G).unwrap();
    reserve(&mut w, &u(501), &ps, None, 15 * G).expect("grow");
    assert_eq!(available(&w, &ps), 45 * G);
    assert!(
        reserve(&mut w, &u(501), &ps, None, 100 * G).is_err(),
        "85 GiB more do not fit"
    );
    // Back to the size before (a resize's rollback) and an exact size past the free space.
    reserve(&mut w, &u(501), &ps, None, 10 * G).expect("shrink");
    assert_eq!(available(&w, &ps), 50 * G);
    serve(
        &mut w.t,
        &ctx(),
        &Caller::admin(),
        reservation::RESERVE,
        &json!({"volumeUuid": u(502), "primaryStorageUuid": ps, "size": 70 * G, "exact": true}),
    )
    .expect("exact never refuses");
    assert_eq!(available(&w, &ps), 0, "saturates, never wraps");
    release(&mut w, &u(502));
    release(&mut w, &u(501));
    assert_eq!(available(&w, &ps), 60 * G);
}

#[test]
fn the_over_provisioning_ratio_deflates_what_a_volume_takes() {
    let (mut w, ps, _) = world("NFS");
    set(&mut w, "overProvisioning.primaryStorage", "2.5");
    reserve(&mut w, &u(501), &ps, None, 10 * G).unwrap();
    assert_eq!(available(&w, &ps), 56 * G);
    // 56 GiB free hold 140 GiB of volumes at 2.5.
    assert!(reserve(&mut w, &u(502), &ps, None, 141 * G).is_err());
    reserve(&mut w, &u(502), &ps, None, 140 * G).expect("fits deflated");
    // The ratio changes: each release gives back what its volume took.
    set(&mut w, "overProvisioning.primaryStorage", "1");
    release(&mut w, &u(501));
    release(&mut w, &u(502));
    assert_eq!(available(&w, &ps), 60 * G);
}

#[test]
fn local_storage_reserves_on_the_host_disk_and_a_remeasurement_keeps_it() {
    let (mut w, ps, hosts) = world("LocalStorage");
    assert_eq!(available(&w, &ps), 120 * G, "two hosts of 60 GiB free");
    assert!(
        reserve(&mut w, &u(501), &ps, None, G).is_err(),
        "a local volume lives on one host"
    );
    reserve(&mut w, &u(501), &ps, Some(&hosts[0]), 50 * G).expect("fits host 1");
    assert_eq!(host_available(&w, &ps, &hosts[0]), 10 * G);
    assert_eq!(host_available(&w, &ps, &hosts[1]), 60 * G);
    assert_eq!(available(&w, &ps), 70 * G);
    // 70 GiB are free on the storage but no single host has 20 GiB on host 1.
    assert!(reserve(&mut w, &u(502), &ps, Some(&hosts[0]), 20 * G).is_err());
    reserve(&mut w, &u(502), &ps, Some(&hosts[1]), 20 * G).expect("fits host 2");
    // The tracker measures again (same figures): what the volumes hold stays taken.
    w.admin("ReconnectPrimaryStorage", json!({"uuid": ps}));
    assert_eq!(host_available(&w, &ps, &hosts[0]), 10 * G);
    assert_eq!(host_available(&w, &ps, &hosts[1]), 40 * G);
    assert_eq!(available(&w, &ps), 50 * G);
    release(&mut w, &u(501));
    release(&mut w, &u(502));
    assert_eq!(host_available(&w, &ps, &hosts[0]), 60 * G);
    assert_eq!(available(&w, &ps), 120 * G);
}

#[test]
fn a_volume_holds_one_storage_at_a_time() {
    let (mut w, ps, _) = world("NFS");
    reserve(&mut w, &u(501), &ps, None, G).unwrap();
    let zone = resource::require::<PrimaryStorage>(&w.t, &ps)
        .unwrap()
        .1
        .zone_uuid;
    let other = w.nfs_ps(&zone);
    assert!(reserve(&mut w, &u(501), &other, None, G).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any interleaving of reservations, resizes and releases (as concurrent flows' steps
    /// reach the log): the storage never holds more than it has, and its free figure is
    /// always the measured space less exactly what the held reservations charged.
    #[test]
    fn reservations_in_any_order_never_overbook(
        ops in proptest::collection::vec((0u8..3, 0usize..4, 1u64..40), 1..30)
    ) {
        let (mut w, ps, _) = world("NFS");
        for (op, vol, size) in ops {
            let uuid = u(600 + vol as u32);
            match op {
                0 | 1 => {
                    let _ = reserve(&mut w, &uuid, &ps, None, size * G);
                }
                _ => {
                    release(&mut w, &uuid);
                }
            }
            let held: u64 = (0..4)
                .filter_map(|k| reservation::get(&w.t, &u(600 + k)).unwrap())
                .map(|r| r.charged)
                .sum();
            prop_assert!(held <= 60 * G, "held {held}");
            prop_assert_eq!(available(&w, &ps), 60 * G - held);
            prop_assert_eq!(reservation::reserved_on(&w.t, &ps).unwrap(), held);
        }
    }
}
