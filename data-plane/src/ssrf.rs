//! Server-side request forgery guard for URLs the operator or a tenant hands us (provider
//! base URLs, webhook URLs): they may never point at link-local or cloud-metadata addresses,
//! and may point at loopback or private networks only when the operator allows it.
//!
//! Defaults: `switchyard serve` (all-in-one, usually next to a local model server) allows
//! private upstreams; `switchyard control-plane` (split, multi-tenant) does not unless
//! `SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS=true`. The check is on the URL as written; names are
//! not resolved here (see the production guide on egress policy for DNS-based bypasses).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an operator allows upstream URLs to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Loopback, RFC 1918, CGNAT, unique-local IPv6 and `localhost`.
    pub allow_private: bool,
}

impl Default for UrlPolicy {
    /// The library default matches `switchyard serve`: private upstreams allowed.
    fn default() -> Self {
        Self {
            allow_private: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    #[error("must be an absolute http(s) URL with a host")]
    Malformed,
    #[error("must not contain credentials; store the API key in the provider's `api_key`")]
    Credentials,
    #[error("points at a link-local address ({0}), which is never allowed")]
    LinkLocal(String),
    #[error("points at a cloud metadata service ({0}), which is never allowed")]
    Metadata(String),
    #[error("points at an unroutable or multicast address ({0})")]
    Unroutable(String),
    #[error(
        "points at a private or loopback address ({0}); the operator can allow this with SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS=true"
    )]
    Private(String),
}

/// Host names of cloud metadata services (compared case-insensitively, trailing dot ignored).
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// Checks `url` against `policy`.
pub fn check_url(url: &str, policy: UrlPolicy) -> Result<(), UrlRejection> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(UrlRejection::Malformed)?;
    if rest.contains(char::is_whitespace) || rest.contains('\\') {
        return Err(UrlRejection::Malformed);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlRejection::Credentials);
    }
    let host = host_of(authority).ok_or(UrlRejection::Malformed)?;
    check_host(&host, policy)
}

/// The host part of `host[:port]` / `[v6]:port`, lower-cased, without a trailing dot.
fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn check_host(host: &str, policy: UrlPolicy) -> Result<(), UrlRejection> {
    if METADATA_HOSTS.contains(&host) {
        return Err(UrlRejection::Metadata(host.to_owned()));
    }
    if let Some(ip) = parse_ip(host) {
        return check_ip(ip, policy);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return private(host, policy);
    }
    Ok(())
}

/// IP literals, including the forms browsers and libc accept for IPv4: a bare decimal
/// (`2852039166`) or hex (`0xa9fea9fe`) number.
fn parse_ip(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let number = if let Some(hex) = host.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).ok()
    } else if host.chars().all(|c| c.is_ascii_digit()) {
        host.parse::<u32>().ok()
    } else {
        None
    };
    number.map(|n| IpAddr::V4(Ipv4Addr::from(n)))
}

/// Classifies an address; also used on resolved addresses.
pub fn check_ip(ip: IpAddr, policy: UrlPolicy) -> Result<(), UrlRejection> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4, policy),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => check_v4(v4, policy),
            None => check_v6(v6, policy),
        },
    }
}

fn check_v4(ip: Ipv4Addr, policy: UrlPolicy) -> Result<(), UrlRejection> {
    let text = ip.to_string();
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        // AWS/GCP/Azure and Alibaba metadata.
        return Err(UrlRejection::Metadata(text));
    }
    if ip.is_link_local() {
        return Err(UrlRejection::LinkLocal(text));
    }
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        return Err(UrlRejection::Unroutable(text));
    }
    let cgnat = a == 100 && (64..128).contains(&b);
    if ip.is_loopback() || ip.is_private() || cgnat {
        return private(&text, policy);
    }
    Ok(())
}

fn check_v6(ip: Ipv6Addr, policy: UrlPolicy) -> Result<(), UrlRejection> {
    let text = ip.to_string();
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        // AWS's IPv6 metadata endpoint.
        return Err(UrlRejection::Metadata(text));
    }
    if first & 0xffc0 == 0xfe80 {
        return Err(UrlRejection::LinkLocal(text));
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(UrlRejection::Unroutable(text));
    }
    let unique_local = first & 0xfe00 == 0xfc00;
    let site_local = first & 0xffc0 == 0xfec0;
    if ip.is_loopback() || unique_local || site_local {
        return private(&text, policy);
    }
    Ok(())
}

fn private(what: &str, policy: UrlPolicy) -> Result<(), UrlRejection> {
    if policy.allow_private {
        Ok(())
    } else {
        Err(UrlRejection::Private(what.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_private: false,
    };
    const LOCAL: UrlPolicy = UrlPolicy {
        allow_private: true,
    };

    #[test]
    fn public_urls_pass() {
        for url in [
            "https://api.openai.com/v1",
            "https://api.anthropic.com",
            "http://8.8.8.8:8080/v1",
            "https://[2001:4860::8888]/v1",
            "https://example.com.:443/path?x=1",
        ] {
            assert_eq!(check_url(url, STRICT), Ok(()), "{url}");
        }
    }

    #[test]
    fn link_local_and_metadata_are_always_rejected() {
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.1.1",
            "http://[fe80::1]/",
            "http://[febf::1]:80",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://METADATA.google.internal./",
            "http://[::ffff:169.254.169.254]/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://100.100.100.200/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0:80",
        ] {
            assert!(check_url(url, LOCAL).is_err(), "{url} passed");
            assert!(check_url(url, STRICT).is_err(), "{url} passed");
        }
        assert!(matches!(
            check_url("http://169.254.169.254/", LOCAL),
            Err(UrlRejection::Metadata(_))
        ));
        assert!(matches!(
            check_url("http://[fe80::1]/", LOCAL),
            Err(UrlRejection::LinkLocal(_))
        ));
    }

    #[test]
    fn private_addresses_need_the_operator() {
        for url in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:8000",
            "http://vllm.localhost",
            "http://10.0.0.5/v1",
            "http://172.16.3.4",
            "http://192.168.1.10:8080",
            "http://100.64.0.1",
            "http://[::1]:8000",
            "http://[fd12:3456::1]/",
            "http://[::ffff:10.1.2.3]/",
            "http://2130706433/",
        ] {
            assert!(
                matches!(check_url(url, STRICT), Err(UrlRejection::Private(_))),
                "{url}: {:?}",
                check_url(url, STRICT)
            );
            assert_eq!(check_url(url, LOCAL), Ok(()), "{url}");
        }
        let message = check_url("http://10.0.0.5/v1", STRICT)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS"),
            "{message}"
        );
    }

    #[test]
    fn malformed_and_credentialed_urls_are_rejected() {
        assert_eq!(check_url("ftp://x", LOCAL), Err(UrlRejection::Malformed));
        assert_eq!(check_url("http://", LOCAL), Err(UrlRejection::Malformed));
        assert_eq!(check_url("http:///x", LOCAL), Err(UrlRejection::Malformed));
        assert_eq!(check_url("http://a b", LOCAL), Err(UrlRejection::Malformed));
        assert_eq!(
            check_url("http://[::1", LOCAL),
            Err(UrlRejection::Malformed)
        );
        assert_eq!(
            check_url("http://user:pw@api.example.com", LOCAL),
            Err(UrlRejection::Credentials)
        );
        // `@` after the authority is part of the path, not credentials.
        assert_eq!(check_url("https://api.example.com/a@b", STRICT), Ok(()));
    }
}
