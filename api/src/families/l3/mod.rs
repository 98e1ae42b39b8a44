//! L3 networks, IP ranges, DNS and IPAM (spec 04 §2.4, §2.5, §6). An L3 sits on an L2; its
//! address pool is the union of its IP ranges (one subnet, one gateway per L3; ranges of all
//! L3s on one L2 are disjoint). Deleting the L2 deletes its L3s, their ranges and their
//! allocated addresses.

mod addressing;
#[cfg(test)]
mod cases;
mod ipam;
mod model;
mod reads;
#[cfg(test)]
mod tests;
mod wire;

pub use ipam::free_ips;
pub use ipam::lowest_free;
pub use ipam::used_ips;
pub use ipam::UsedIp;
pub use ipam::USED_IP_TABLE;
pub use model::IpRange;
pub use model::L3Network;
pub use model::L3Op;
pub use model::L3Result;
pub use model::RangeSpec;
pub use model::CATEGORIES;
pub use model::KIND;
pub use model::RANGE_KIND;
pub use model::RANGE_TABLE;
pub use model::TABLE;
pub use reads::MAX_FREE_IP_LIMIT;

use serde_json::Map;
use serde_json::Value;

use crate::family::inventory_reply;
use crate::family::route;
use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::KindDecl;
use crate::family::RestBody::Action as A;
use crate::family::RestBody::None as N;
use crate::family::RestBody::Params as P;
use crate::resource::generic;
use crate::resource::relations::OnDelete;
use crate::resource::relations::Relation;
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The L3 network family.
pub struct L3Networks;

impl Family for L3Networks {
    type Op = L3Op;
    type Out = L3Result;
    const DECL: FamilyDecl = FamilyDecl {
        name: "l3",
        tables: &[TABLE, RANGE_TABLE, USED_IP_TABLE],
        kinds: &[
            KindDecl {
                // VM NICs on it join this cascade with the VM family.
                relations: &[Relation {
                    field: "l2NetworkUuid",
                    parent: "L2Network",
                    on_delete: OnDelete::Cascade,
                    on_parent_state: None,
                }],
                on_delete: Some(ipam::forget_used_ips),
                ..KindDecl::new(KIND, TABLE, &["L3NetworkVO"])
            },
            KindDecl {
                relations: &[Relation {
                    field: "l3NetworkUuid",
                    parent: KIND,
                    on_delete: OnDelete::Cascade,
                    on_parent_state: None,
                }],
                ..KindDecl::new(RANGE_KIND, RANGE_TABLE, &["IpRangeVO"])
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateL3Network",
                wire::create,
                &[route(Po, "/v1/l3-networks", P)],
            )
            .creating("L3NetworkVO"),
            CallDecl::new(
                "UpdateL3Network",
                wire::update,
                &[route(Pu, "/v1/l3-networks/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeL3NetworkState",
                |p| generic::plan_change_state(p, |uuid, event| L3Op::ChangeState { uuid, event }),
                &[route(Pu, "/v1/l3-networks/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteL3Network",
                |p| generic::plan_delete(p, |uuid| L3Op::Delete { uuid }),
                &[route(D, "/v1/l3-networks/{uuid}", N)],
            ),
            CallDecl::new(
                "AddIpRange",
                |p| wire::add_range(p, wire::explicit_range),
                &[route(Po, "/v1/l3-networks/{l3NetworkUuid}/ip-ranges", P)],
            )
            .creating("IpRangeVO"),
            CallDecl::new(
                "AddIpRangeByNetworkCidr",
                |p| wire::add_range(p, wire::cidr_range),
                &[route(
                    Po,
                    "/v1/l3-networks/{l3NetworkUuid}/ip-ranges/by-cidr",
                    P,
                )],
            )
            .creating("IpRangeVO"),
            CallDecl::new(
                "UpdateIpRange",
                |p| generic::plan_update(p, |uuid, rename| L3Op::UpdateIpRange { uuid, rename }),
                &[route(Pu, "/v1/l3-networks/ip-ranges/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteIpRange",
                wire::delete_range,
                &[route(D, "/v1/l3-networks/ip-ranges/{uuid}", N)],
            ),
            CallDecl::new(
                "AddDnsToL3Network",
                |p| {
                    wire::dns(p, |l3_network_uuid, dns| L3Op::AddDns {
                        l3_network_uuid,
                        dns,
                    })
                },
                &[route(Po, "/v1/l3-networks/{l3NetworkUuid}/dns", P)],
            ),
            CallDecl::new(
                "RemoveDnsFromL3Network",
                |p| {
                    wire::dns(p, |l3_network_uuid, dns| L3Op::RemoveDns {
                        l3_network_uuid,
                        dns,
                    })
                },
                &[route(D, "/v1/l3-networks/{l3NetworkUuid}/dns/{dns}", N)],
            ),
            CallDecl::new(
                "QueryL3Network",
                generic::plan_query::<L3Network>,
                &[
                    route(G, "/v1/l3-networks", N),
                    route(G, "/v1/l3-networks/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryIpRange",
                generic::plan_query::<IpRange>,
                &[
                    route(G, "/v1/l3-networks/ip-ranges", N),
                    route(G, "/v1/l3-networks/ip-ranges/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "GetFreeIp",
                reads::free_ip,
                &[
                    route(G, "/v1/l3-networks/ip/free", N),
                    route(G, "/v1/l3-networks/{l3NetworkUuid}/ip/free", N),
                    route(G, "/v1/l3-networks/ip-ranges/{ipRangeUuid}/ip/free", N),
                ],
            ),
            CallDecl::new(
                "CheckIpAvailability",
                reads::check_ip,
                &[route(
                    G,
                    "/v1/l3-networks/{l3NetworkUuid}/ip/{ip}/availability",
                    N,
                )],
            ),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: L3Op,
    ) -> Result<L3Result, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &L3Result) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
