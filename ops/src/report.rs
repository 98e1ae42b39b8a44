//! `zsctl status` / `member list`: gather every member's own view and render it.

use proto::http::{ClusterStatus, Readiness};
use serde::Serialize;

use crate::client::{base_url, Nodes, OpsError};
use crate::table::{opt, Table};

/// One row of `zsctl status`: a member as the cluster lists it plus what it says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Node id.
    pub id: u64,
    /// Advertised HTTP address.
    pub api_addr: String,
    /// Advertised Raft address.
    pub raft_addr: String,
    /// Voter or learner (per membership).
    pub voter: bool,
    /// Whether its HTTP endpoint answered.
    pub reachable: bool,
    /// Its role, from its own status (None when unreachable).
    pub role: Option<String>,
    /// Its term.
    pub term: Option<u64>,
    /// Leader it knows of.
    pub leader_id: Option<u64>,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// Replication lag in entries as the leader reports it.
    pub lag: Option<u64>,
    /// Readiness from `/health/ready`.
    pub ready: Option<bool>,
    /// Readiness reason, or the error when unreachable.
    pub health: String,
}

/// The whole `zsctl status` report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    /// Cluster id.
    pub cluster_id: String,
    /// Node whose membership list was used.
    pub gathered_from: u64,
    /// Leader as the gathering node knows it.
    pub leader_id: Option<u64>,
    /// Members, ordered by id.
    pub nodes: Vec<NodeRow>,
}

impl ClusterReport {
    /// Ids of members that report themselves leader.
    pub fn leaders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.role.as_deref() == Some("Leader"))
            .map(|n| n.id)
            .collect()
    }

    /// True when exactly one member is leader, all are reachable and all applied indexes match.
    pub fn healthy_and_converged(&self) -> bool {
        let applied: Vec<_> = self.nodes.iter().map(|n| n.applied_index).collect();
        self.leaders().len() == 1
            && self
                .nodes
                .iter()
                .all(|n| n.reachable && n.ready == Some(true))
            && applied.windows(2).all(|w| w[0] == w[1])
    }

    /// The human-readable table plus a summary line.
    pub fn render(&self) -> String {
        let mut t = Table::new(&[
            "ID", "API", "RAFT", "VOTER", "ROLE", "TERM", "LEADER", "LAST_LOG", "COMMIT",
            "APPLIED", "LAG", "HEALTH",
        ]);
        for n in &self.nodes {
            let health = match (n.reachable, n.ready) {
                (false, _) => format!("unreachable: {}", n.health),
                (true, Some(true)) => "ready".to_string(),
                (true, _) => format!("not ready: {}", n.health),
            };
            t.row(vec![
                n.id.to_string(),
                n.api_addr.clone(),
                n.raft_addr.clone(),
                if n.voter {
                    "yes".into()
                } else {
                    "learner".into()
                },
                n.role.clone().unwrap_or_else(|| "-".into()),
                opt(n.term),
                opt(n.leader_id),
                opt(n.last_log_index),
                opt(n.commit_index),
                opt(n.applied_index),
                opt(n.lag),
                health,
            ]);
        }
        let leaders = self.leaders();
        let summary = match leaders.as_slice() {
            [] => "no leader".to_string(),
            [one] => format!("leader {one}"),
            many => format!("WARNING: {} nodes claim leadership: {many:?}", many.len()),
        };
        let reachable = self.nodes.iter().filter(|n| n.reachable).count();
        format!(
            "cluster {} — {} members, {} reachable, {}\n{}",
            if self.cluster_id.is_empty() {
                "?"
            } else {
                &self.cluster_id
            },
            self.nodes.len(),
            reachable,
            summary,
            t.render()
        )
    }
}

/// Build the report: membership from the first reachable node, then each member's own status
/// and readiness fetched from it directly (so a stale or partitioned node shows its own view).
pub fn gather(nodes: &Nodes) -> Result<ClusterReport, OpsError> {
    let (base, via) = nodes.first(|c| c.status())?;
    // Prefer the leader's membership view: only it knows matched index and lag.
    let leader_view = base
        .leader_id
        .filter(|l| *l != base.node_id)
        .and_then(|l| base.member(l))
        .and_then(|m| via.sibling(&m.api_addr).ok())
        .and_then(|c| c.status().ok());
    let view = leader_view.as_ref().unwrap_or(&base);
    Ok(build_report(view, |addr| {
        let c = via.sibling(addr)?;
        let st = c.status()?;
        let ready = c.ready().ok();
        Ok((st, ready))
    }))
}

/// Assemble rows from a membership view and a per-member probe (split out for tests).
pub fn build_report(
    view: &ClusterStatus,
    mut probe: impl FnMut(&str) -> Result<(ClusterStatus, Option<Readiness>), OpsError>,
) -> ClusterReport {
    let mut members = view.members.clone();
    members.sort_by_key(|m| m.id);
    let nodes = members
        .iter()
        .map(|m| {
            let mut row = NodeRow {
                id: m.id,
                api_addr: m.api_addr.clone(),
                raft_addr: m.raft_addr.clone(),
                voter: m.voter,
                lag: m.lag,
                ..Default::default()
            };
            match probe(&base_url(&m.api_addr)) {
                Ok((st, ready)) => {
                    row.reachable = true;
                    row.role = Some(st.role.clone());
                    row.term = Some(st.term);
                    row.leader_id = st.leader_id;
                    row.last_log_index = Some(st.last_log_index);
                    row.commit_index = Some(st.commit_index);
                    row.applied_index = Some(st.applied_index);
                    if st.node_id != m.id {
                        row.health =
                            format!("address answers as node {} (expected {})", st.node_id, m.id);
                        row.ready = Some(false);
                    } else if let Some(r) = ready {
                        row.ready = Some(r.ready);
                        row.health = r.reason;
                    } else {
                        row.health = "readiness unknown".into();
                    }
                }
                Err(e) => {
                    row.health = match e {
                        OpsError::Unreachable { detail, .. } => detail,
                        other => other.to_string(),
                    };
                }
            }
            row
        })
        .collect();
    ClusterReport {
        cluster_id: view.cluster_id.clone(),
        gathered_from: view.node_id,
        leader_id: view.leader_id,
        nodes,
    }
}

/// `zsctl member list` table from one status.
pub fn render_members(st: &ClusterStatus) -> String {
    let mut t = Table::new(&["ID", "RAFT", "API", "VOTER", "MATCHED", "LAG", "LEADER"]);
    let mut members = st.members.clone();
    members.sort_by_key(|m| m.id);
    for m in &members {
        t.row(vec![
            m.id.to_string(),
            m.raft_addr.clone(),
            m.api_addr.clone(),
            if m.voter {
                "yes".into()
            } else {
                "learner".into()
            },
            opt(m.matched_index),
            opt(m.lag),
            if st.leader_id == Some(m.id) {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    t.render()
}

/// The follower voter best placed to take leadership: the most caught-up one (lowest lag,
/// then highest matched index, then lowest id for determinism).
pub fn pick_transfer_target(st: &ClusterStatus) -> Option<u64> {
    st.members
        .iter()
        .filter(|m| m.voter && Some(m.id) != st.leader_id)
        .min_by_key(|m| {
            (
                m.lag.unwrap_or(u64::MAX),
                std::cmp::Reverse(m.matched_index.unwrap_or(0)),
                m.id,
            )
        })
        .map(|m| m.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::http::MemberInfo;

    fn member(id: u64, lag: Option<u64>) -> MemberInfo {
        MemberInfo {
            id,
            raft_addr: format!("127.0.0.1:707{id}"),
            api_addr: format!("127.0.0.1:808{id}"),
            voter: true,
            matched_index: lag.map(|l| 100 - l),
            lag,
        }
    }

    fn view() -> ClusterStatus {
        ClusterStatus {
            node_id: 1,
            cluster_id: "zs".into(),
            role: "Leader".into(),
            term: 2,
            leader_id: Some(1),
            last_log_index: 100,
            commit_index: 100,
            applied_index: 100,
            members: vec![member(3, Some(5)), member(1, Some(0)), member(2, Some(0))],
            served_by: 1,
        }
    }

    #[test]
    fn report_marks_unreachable_and_detects_divergence() {
        let v = view();
        let r = build_report(&v, |addr| {
            if addr.ends_with("8083") {
                return Err(OpsError::Unreachable {
                    node: addr.into(),
                    detail: "Connection refused".into(),
                });
            }
            let id = if addr.ends_with("8081") { 1 } else { 2 };
            let st = ClusterStatus {
                node_id: id,
                role: if id == 1 {
                    "Leader".into()
                } else {
                    "Follower".into()
                },
                applied_index: 100,
                ..v.clone()
            };
            Ok((
                st,
                Some(Readiness {
                    ready: true,
                    reason: "ok".into(),
                    node_id: id,
                }),
            ))
        });
        assert_eq!(
            r.nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(r.leaders(), vec![1]);
        assert!(!r.nodes[2].reachable);
        assert!(!r.healthy_and_converged());
        let text = r.render();
        assert!(text.contains("unreachable: Connection refused"), "{text}");
        assert!(
            text.starts_with("cluster zs — 3 members, 2 reachable, leader 1\n"),
            "{text}"
        );
        assert!(
            text.lines().nth(1).unwrap().starts_with("ID  API"),
            "{text}"
        );
    }

    #[test]
    fn converged_cluster_is_healthy_and_wrong_identity_is_flagged() {
        let v = view();
        let r = build_report(&v, |addr| {
            let id: u64 = addr[addr.len() - 1..].parse().unwrap();
            let st = ClusterStatus {
                node_id: id,
                role: if id == 1 {
                    "Leader".into()
                } else {
                    "Follower".into()
                },
                ..v.clone()
            };
            Ok((
                st,
                Some(Readiness {
                    ready: true,
                    reason: "ok".into(),
                    node_id: id,
                }),
            ))
        });
        assert!(r.healthy_and_converged(), "{}", r.render());
        let bad = build_report(&v, |_| {
            Ok((
                ClusterStatus {
                    node_id: 9,
                    ..v.clone()
                },
                None,
            ))
        });
        assert!(bad.nodes[0].health.contains("answers as node 9"));
        assert_eq!(bad.leaders().len(), 3);
        assert!(bad.render().contains("WARNING: 3 nodes claim leadership"));
    }

    #[test]
    fn transfer_target_is_most_caught_up_follower() {
        let v = view();
        assert_eq!(pick_transfer_target(&v), Some(2));
        let mut v2 = v.clone();
        v2.members.retain(|m| m.id == 1);
        assert_eq!(pick_transfer_target(&v2), None);
        let text = render_members(&v);
        assert!(text.lines().nth(1).unwrap().ends_with('*'), "{text}");
    }
}
