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
mod services;
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

use crate::family::prelude::*;

/// ZStack's classes of L3 networks, IP ranges and the objects in them.
const IP_RANGE: JavaClass = JavaClass::leaf("org.zstack.header.network.l3.IpRangeInventory");
const L3_NETWORK: JavaClass = JavaClass {
    name: "org.zstack.header.network.l3.L3NetworkInventory",
    fields: &[
        ("ipRanges", Schema::Class(&IP_RANGE)),
        (
            "networkServices",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.header.network.service.NetworkServiceL3NetworkRefInventory",
            )),
        ),
        (
            "hostRoute",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.header.network.l3.L3NetworkHostRouteInventory",
            )),
        ),
        (
            "reservedIpRanges",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.header.network.l3.ReservedIpRangeInventory",
            )),
        ),
    ],
};
const FREE_IP: JavaClass = JavaClass::leaf("org.zstack.header.network.l3.FreeIpInventory");

/// The L3 network family.
pub struct L3Networks;

impl Family for L3Networks {
    type Op = L3Op;
    type Out = L3Result;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[
            ServiceDecl {
                name: services::ALLOCATE_IP,
                run: services::allocate,
            },
            ServiceDecl {
                name: services::RELEASE_IP,
                run: services::release,
            },
        ],
        replies: inventories!(Schema::Class(&L3_NETWORK)),
        name: "l3",
        tables: &[TABLE, RANGE_TABLE, USED_IP_TABLE],
        kinds: &[
            KindDecl {
                // VM NICs on it join this cascade with the VM family.
                relations: &[Relation::cascade("l2NetworkUuid", "L2Network")],
                on_delete: Some(ipam::forget_used_ips),
                ..KindDecl::new(KIND, TABLE, &["L3NetworkVO"])
            },
            KindDecl {
                relations: &[Relation::cascade("l3NetworkUuid", KIND)],
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
                routes!(actions "/v1/l3-networks"),
            ),
            state_call!("ChangeL3NetworkState", "/v1/l3-networks", L3Op::ChangeState),
            delete_call!("DeleteL3Network", "/v1/l3-networks", L3Op::Delete),
            CallDecl::new(
                "AddIpRange",
                |p| wire::add_range(p, wire::explicit_range),
                &[route(Po, "/v1/l3-networks/{l3NetworkUuid}/ip-ranges", P)],
            )
            .creating("IpRangeVO")
            .replying(inventories!(Schema::Class(&IP_RANGE))),
            CallDecl::new(
                "AddIpRangeByNetworkCidr",
                |p| wire::add_range(p, wire::cidr_range),
                &[route(
                    Po,
                    "/v1/l3-networks/{l3NetworkUuid}/ip-ranges/by-cidr",
                    P,
                )],
            )
            .creating("IpRangeVO")
            .replying(inventories!(Schema::Class(&IP_RANGE))),
            update_call!(
                "UpdateIpRange",
                "/v1/l3-networks/ip-ranges",
                L3Op::UpdateIpRange
            )
            .replying(inventories!(Schema::Class(&IP_RANGE))),
            CallDecl::new(
                "DeleteIpRange",
                wire::delete_range,
                routes!(delete "/v1/l3-networks/ip-ranges"),
            )
            .replying(inventories!(Schema::Class(&IP_RANGE))),
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
            query_call!("QueryL3Network", "/v1/l3-networks", L3Network),
            query_call!("QueryIpRange", "/v1/l3-networks/ip-ranges", IpRange)
                .replying(inventories!(Schema::Class(&IP_RANGE))),
            CallDecl::new(
                "GetFreeIp",
                reads::free_ip,
                &[
                    route(G, "/v1/l3-networks/ip/free", N),
                    route(G, "/v1/l3-networks/{l3NetworkUuid}/ip/free", N),
                    route(G, "/v1/l3-networks/ip-ranges/{ipRangeUuid}/ip/free", N),
                ],
            )
            .replying(inventories!(Schema::Class(&FREE_IP))),
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
    const APPLY: ApplyFn<Self> = model::apply;
}
