//! The leader-to-agent protocol (`proto/agent.proto`): the Raft leader drives each KVM host's
//! `zsagent` over mutual TLS; every request carries the leader's term, which the agent keeps
//! durably and uses to refuse a deposed leader.

/// Version of the leader-to-agent protocol; the agent refuses callers of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The port `zsagent` listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 7272;

/// The DNS name every agent certificate carries and every caller verifies: addresses, NAT or
/// a simulator serving many hosts do not change which certificate is expected.
pub const TLS_NAME: &str = "zsagent";

/// Files of an agent's credentials, inside its `pki/` directory.
pub mod files {
    /// The cluster CA certificate (PEM).
    pub const CA_CERT: &str = "ca.crt";
    /// The agent's certificate (PEM), issued by the cluster CA.
    pub const CERT: &str = "agent.crt";
    /// The agent's private key (PEM, mode 0600).
    pub const KEY: &str = "agent.key";
}

/// The URI SAN naming the agent of host `host` (its management address) in cluster `cluster`.
pub fn agent_uri(cluster: &str, host: &str) -> String {
    format!("urn:zstack:{cluster}:agent:{host}")
}

/// The cluster and host an agent URI SAN names, if `uri` is one.
pub fn parse_agent_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("urn:zstack:")?.rsplit_once(":agent:")
}

/// Generated protobuf / tonic code of `zstack.agent.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("zstack.agent.v1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_uris_round_trip_and_node_uris_are_not_agent_uris() {
        let u = agent_uri("zstack", "127.0.0.2");
        assert_eq!(parse_agent_uri(&u), Some(("zstack", "127.0.0.2")));
        assert_eq!(parse_agent_uri("urn:zstack:zstack:node:1"), None);
        assert_eq!(parse_agent_uri("urn:other:agent:x"), None);
    }
}
