//! Network policy: which destinations a tool call may reach. Internal addresses (loopback,
//! private, link-local/metadata, unique-local, unspecified, and IPv4 embedded in IPv6) are blocked
//! unless allowed. Enforced on the address actually connected to, via a DNS resolver, and on redirects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// A connection refused by the policy; found again in reqwest's error chain to classify the call.
#[derive(Debug, thiserror::Error)]
#[error("destination {host} ({addr}) is blocked by the network policy")]
pub struct Blocked {
    /// Host as written in the URL.
    pub host: String,
    /// Address it resolved to.
    pub addr: String,
}

/// The allow list from `--allow-hosts`.
#[derive(Debug, Default, Clone)]
pub struct NetworkPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
    /// Only the allowed destinations are reachable: public ones are blocked too.
    only_allowed: bool,
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    let s = ip.segments();
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4 address.
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return blocked_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return blocked_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 (2002::/16) carries the IPv4 address in bits 16..48: a relay delivers to it.
    if s[0] == 0x2002 {
        return blocked_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    // Teredo (2001:0::/32): the server is bits 32..64, the client the last 32 bits inverted.
    // Either one being internal makes the address a way into the internal network.
    if s[0] == 0x2001 && s[1] == 0 {
        let server = Ipv4Addr::new((s[2] >> 8) as u8, s[2] as u8, (s[3] >> 8) as u8, s[3] as u8);
        let client = Ipv4Addr::new(
            !(s[6] >> 8) as u8,
            !s[6] as u8,
            !(s[7] >> 8) as u8,
            !s[7] as u8,
        );
        return blocked_v4(server) || blocked_v4(client);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique-local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
}

/// Whether an address is internal and so blocked by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

impl NetworkPolicy {
    /// Parse `--allow-hosts` entries: host names, IPs or CIDRs.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut p = NetworkPolicy::default();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bare = e.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                p.nets.push(net);
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else if e.contains('/') {
                return Err(format!("--allow-hosts: '{e}' is not a valid CIDR"));
            } else if e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            {
                p.hosts.push(e.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "--allow-hosts: '{e}' is not a host name, IP or CIDR"
                ));
            }
        }
        Ok(p)
    }

    /// Check a connection to `ip` made for `host`; `Err` if it must not be made.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        // The allowed names are stored lower-case: compared without lower-casing a copy.
        if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(bare))
            || self.nets.iter().any(|n| n.contains(&ip))
        {
            return Ok(());
        }
        if self.only_allowed || is_internal(ip) {
            return Err(Blocked {
                host: host.to_string(),
                addr: ip.to_string(),
            });
        }
        Ok(())
    }

    /// Block every destination not allowed, public ones included (`--egress-only-allowed`).
    pub fn only_allowed(mut self, yes: bool) -> Self {
        self.only_allowed = yes;
        self
    }

    /// Check a URL's host when it is an IP literal (those never reach the resolver).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        // The URL's own text of the address names it, without the brackets around IPv6.
        let text = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(text, IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(text, IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }
}

/// reqwest DNS resolver that drops (and, when nothing is left, refuses) blocked addresses.
pub struct PolicyResolver {
    /// The policy to enforce.
    pub policy: Arc<NetworkPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl NetworkPolicy {
    /// The addresses of `host` a connection may be made to (with `port`): the blocked ones are
    /// dropped, and when nothing is left the first refusal is the error.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let mut first_blocked = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(host, a.ip()) {
                Ok(()) => true,
                Err(b) => {
                    first_blocked.get_or_insert(b);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), first_blocked) {
            (true, Some(b)) => Err(Box::new(b)),
            _ => Ok(allowed),
        }
    }
}

/// Find a policy refusal anywhere in an error's source chain.
pub fn find_blocked<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_blocked() {
        let blocked = [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "ff02::1",
            // 6to4 embedding loopback, metadata and a private address.
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101:5::9",
            // Teredo whose client (inverted last 32 bits) is 10.0.0.1, and whose server is 10.0.0.1.
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "2001:0:a00:1:8000:63bf:f7f7:f7f7",
        ];
        for ip in blocked {
            assert!(is_internal(ip.parse().unwrap()), "{ip} should be internal");
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001:db9::1",
        ];
        for ip in public {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn allow_list() {
        let p = NetworkPolicy::parse(&[
            "127.0.0.1".into(),
            "10.1.0.0/16".into(),
            "Internal.Example".into(),
        ])
        .unwrap();
        assert!(p.check("x", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("x", "::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("x", "127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check("x", "10.1.200.3".parse().unwrap()).is_ok());
        assert!(p.check("x", "10.2.0.1".parse().unwrap()).is_err());
        assert!(
            p.check("internal.example", "192.168.0.9".parse().unwrap())
                .is_ok()
        );
        assert!(
            p.check("other.example", "192.168.0.9".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check("public.example", "93.184.216.34".parse().unwrap())
                .is_ok()
        );
        assert!(NetworkPolicy::parse(&["10.0.0.0/99".into()]).is_err());
        // Locked down: only the allow list, public addresses too are refused.
        let locked = NetworkPolicy::parse(&["127.0.0.1".into()])
            .unwrap()
            .only_allowed(true);
        assert!(locked.check("x", "8.8.8.8".parse().unwrap()).is_err());
        assert!(locked.check("x", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(NetworkPolicy::parse(&["bad host!".into()]).is_err());
    }

    #[test]
    fn ip_literal_urls() {
        let p = NetworkPolicy::default();
        for u in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let url = reqwest::Url::parse(u).unwrap();
            assert!(p.check_url(&url).is_err(), "{u} should be blocked");
        }
        assert!(
            p.check_url(&reqwest::Url::parse("http://8.8.8.8/").unwrap())
                .is_ok()
        );
    }

    /// Name resolution only (the hosts file): nothing is connected to.
    #[tokio::test]
    async fn resolving_drops_blocked_addresses_and_refuses_when_none_is_left() {
        let strict = NetworkPolicy::default();
        let err = strict
            .resolve("localhost", 8080)
            .await
            .expect_err("localhost is loopback, blocked by default");
        let blocked = find_blocked(err.as_ref()).expect("the refusal is a Blocked");
        assert_eq!(blocked.host, "localhost");
        let allowed = NetworkPolicy::parse(&["localhost".into()]).unwrap();
        let addrs = allowed.resolve("localhost", 8080).await.expect("allowed");
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
    }
}
