//! HTTP for tool modules: only to the manifest's hosts and ports, and never to an address the
//! operator did not mean to expose.
//!
//! Every connection must be granted by one allowlist entry that matches its host (name or literal
//! address) and its port; an entry without a port grants the scheme's default port only (80 for
//! http, 443 for https). The URL is checked before the request and on every redirect. The
//! address is checked where it matters, at connect time: our resolver hands reqwest only the
//! addresses that pass, so a name that resolves (or re-resolves, DNS rebinding) to loopback,
//! private, link-local or cloud-metadata space is refused even though its name was allowed.
//! Such addresses are reachable only when the manifest lists them literally for the same port
//! (`127.0.0.1:8080`): a name does not inherit the ports of an address it resolves to.
//!
//! reqwest's resolver is told only a name, never a port, so each request gets its own client
//! (without a connection pool) whose resolver knows the one destination being connected to: the
//! request's URL, then each redirect's, as the redirect policy accepts it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Largest response body handed to a module.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Time a request leaves its module before the call's deadline (at most a quarter of what is
/// left), to read a reply or an error and answer with it.
const REPLY_MARGIN: Duration = Duration::from_millis(50);

/// A manifest's `http_hosts` entry that cannot be understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("http_hosts entry {entry:?}: {reason}")]
pub struct BadHostEntry {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One allowlist entry: a host name (or `*.suffix`) or a literal address, with an optional port.
#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Name(String),
    Suffix(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq)]
struct AllowedHost {
    host: HostPattern,
    port: Option<u16>,
}

/// The hosts a tool server may reach.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostAllowlist {
    entries: Vec<AllowedHost>,
}

impl HostAllowlist {
    /// Parse `host`, `host:port`, `*.example.com`, `10.0.0.5:8080` or `[::1]:8080` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadHostEntry> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Refuse a URL whose scheme, host or port no single entry grants (an entry without a port
    /// grants the scheme's default port only).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        Destination::of(url).and_then(|d| self.check_destination(&d))
    }

    fn check_destination(&self, dest: &Destination) -> Result<(), String> {
        let listed = self
            .entries
            .iter()
            .any(|e| e.matches(&dest.host, dest.port, dest.default_port));
        if !listed {
            return Err(format!(
                "host {}:{} is not in this tool's http_hosts allowlist",
                dest.shown, dest.port
            ));
        }
        // A literal address matched a literal entry above, host and port: the operator meant it,
        // whatever space it lies in.
        Ok(())
    }

    /// Whether an entry lists `ip` literally for `port`.
    fn lists_address(&self, ip: IpAddr, port: u16, default_port: u16) -> bool {
        self.entries
            .iter()
            .any(|e| e.matches(&Target::Ip(ip), port, default_port))
    }

    /// Addresses a name may connect to on `dest`'s port: public ones, and refused ones only when
    /// an entry lists that address literally for that same port.
    fn filter_resolved(
        &self,
        dest: &Destination,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, String> {
        let name = dest.shown.as_str();
        let mut refused = Vec::new();
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match refused_class(a.ip()) {
                Some(class) if !self.lists_address(a.ip(), dest.port, dest.default_port) => {
                    refused.push(format!("{} ({class})", SocketAddr::new(a.ip(), dest.port)));
                    false
                }
                _ => true,
            })
            .collect();
        if allowed.is_empty() {
            if refused.is_empty() {
                return Err(format!("{name} did not resolve to any address"));
            }
            return Err(format!(
                "{name} resolves to refused addresses only: {}",
                refused.join(", ")
            ));
        }
        Ok(allowed)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Name(String),
    Ip(IpAddr),
}

/// Where one connection goes: a URL's host, port and its scheme's default port.
#[derive(Debug, Clone, PartialEq)]
struct Destination {
    host: Target,
    port: u16,
    default_port: u16,
    /// The host as the URL wrote it, for messages.
    shown: String,
}

impl Destination {
    fn of(url: &Url) -> Result<Self, String> {
        let default_port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            other => {
                return Err(format!(
                    "scheme {other:?} is not allowed (http or https only)"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Target::Name(normal_name(d)),
            Some(url::Host::Ipv4(ip)) => Target::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Target::Ip(IpAddr::V6(ip)),
            None => return Err(format!("{url} has no host")),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            default_port,
            shown: url.host_str().unwrap_or_default().to_owned(),
        })
    }
}

/// A host name as entries and destinations compare it.
fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl AllowedHost {
    /// Whether this entry grants `target` on `port`; without a port of its own it grants only
    /// the scheme's `default_port`.
    fn matches(&self, target: &Target, port: u16, default_port: u16) -> bool {
        if self.port.unwrap_or(default_port) != port {
            return false;
        }
        match (&self.host, target) {
            (HostPattern::Name(n), Target::Name(t)) => n == t,
            (HostPattern::Suffix(s), Target::Name(t)) => {
                t.len() > s.len() + 1
                    && t.ends_with(s.as_str())
                    && t[..t.len() - s.len()].ends_with('.')
            }
            (HostPattern::Ip(ip), Target::Ip(t)) => ip == t,
            _ => false,
        }
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost, BadHostEntry> {
    let bad = |reason: &str| BadHostEntry {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = entry.trim();
    if trimmed.is_empty() || trimmed.contains('/') || trimmed.contains("://") {
        return Err(bad("expected a host, host:port or *.domain, not a URL"));
    }
    // Reuse the URL parser for IPv6 brackets, ports and IDNA rather than splitting by hand.
    let wildcard = trimmed.strip_prefix("*.");
    let url = Url::parse(&format!("http://{}/", wildcard.unwrap_or(trimmed)))
        .map_err(|e| bad(&e.to_string()))?;
    let port = url.port();
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = normal_name(d);
            if wildcard.is_some() {
                HostPattern::Suffix(d)
            } else {
                HostPattern::Name(d)
            }
        }
        Some(url::Host::Ipv4(ip)) if wildcard.is_none() => HostPattern::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) if wildcard.is_none() => HostPattern::Ip(IpAddr::V6(ip)),
        _ => return Err(bad("a wildcard must be followed by a domain name")),
    };
    Ok(AllowedHost { host, port })
}

/// Why an address is refused unless listed, or `None` for ordinary public addresses.
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_unicast_link_local() {
                Some("link-local")
            } else if v6.is_unique_local() {
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 embeds an IPv4 address; judge that one.
                let v4 = Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32);
                refused_v4(v4)
            } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                Some("documentation space")
            } else {
                None
            }
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if o == [169, 254, 169, 254] {
        Some("the cloud metadata service")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT) space")
    } else if o[0] == 0 || ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking space")
    } else if ip.is_documentation() {
        Some("documentation space")
    } else {
        None
    }
}

/// The destination the current connection of one request goes to, shared by the request, its
/// redirect policy and its resolver.
type CurrentDestination = Arc<Mutex<Option<Destination>>>;

/// Resolves names with the system resolver and drops the addresses the allowlist refuses for the
/// request's current destination.
struct CheckedResolver {
    allow: Arc<HostAllowlist>,
    current: CurrentDestination,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let dest = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Fail closed: a name that is not the destination just checked is never resolved.
            let dest = dest
                .filter(|d| d.host == Target::Name(normal_name(&host)))
                .ok_or_else(|| format!("{host} is not the destination that was checked"))?;
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect();
            let allowed = allow.filter_resolved(&dest, addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// HTTP for one tool server, bound to its allowlist.
#[derive(Clone)]
pub struct HttpAccess {
    allow: Arc<HostAllowlist>,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("allow", &self.allow)
            .finish()
    }
}

impl HttpAccess {
    /// Access that connects only where `allow` says, with no proxy from the environment. The
    /// client is built here once to report a configuration error at load time.
    pub fn new(allow: HostAllowlist) -> Result<Self, String> {
        let access = Self {
            allow: Arc::new(allow),
        };
        access.client(Arc::default())?;
        Ok(access)
    }

    /// A client for one request: no pool (every connection resolves afresh, against the
    /// destination of that moment), redirects checked and recorded in `current`.
    fn client(&self, current: CurrentDestination) -> Result<reqwest::Client, String> {
        let redirect_allow = self.allow.clone();
        let redirect_current = current.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let checked = Destination::of(attempt.url())
                .and_then(|d| redirect_allow.check_destination(&d).map(|()| d));
            match checked {
                Ok(dest) => {
                    *redirect_current
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(dest);
                    attempt.follow()
                }
                Err(e) => {
                    let to = attempt.url().to_string();
                    attempt.error(format!("redirect to {to} refused: {e}"))
                }
            }
        });
        reqwest::Client::builder()
            .no_proxy()
            .redirect(redirects)
            .pool_max_idle_per_host(0)
            .dns_resolver(CheckedResolver {
                allow: self.allow.clone(),
                current,
            })
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("caxton-tool/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// A client for one request to `url` (and the redirects the allowlist accepts), connecting
    /// only to addresses that pass the same checks as a module's requests; the error says why
    /// `url` is refused.
    pub fn client_for(&self, url: &Url) -> Result<reqwest::Client, String> {
        let dest = Destination::of(url)?;
        self.allow.check_destination(&dest)?;
        self.client(Arc::new(Mutex::new(Some(dest))))
    }

    /// Perform one request for a module, ending in time for the module to act on the reply
    /// before `deadline`, its call's; the reply is the ABI's JSON.
    pub async fn request(&self, req: HttpRequest, deadline: Instant) -> serde_json::Value {
        match self.try_request(req, deadline).await {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "error": e }),
        }
    }

    async fn try_request(
        &self,
        req: HttpRequest,
        deadline: Instant,
    ) -> Result<serde_json::Value, String> {
        let url = Url::parse(&req.url).map_err(|e| format!("bad url {:?}: {e}", req.url))?;
        let dest = Destination::of(&url)?;
        self.allow.check_destination(&dest)?;
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("bad method {:?}", req.method))?;
        let client = self.client(Arc::new(Mutex::new(Some(dest))))?;
        // Measured after the client is built, and short of the deadline by a margin, so the
        // module gets the "no response" reply with time left to act on it instead of being
        // stopped at its deadline while the host still waits.
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.saturating_sub(REPLY_MARGIN.min(left / 4));
        if timeout.is_zero() {
            return Err(format!("{url}: the call's time is up"));
        }
        let mut builder = client.request(method, url.clone()).timeout(timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("{url}: no response within {timeout:?}")
            } else {
                format!("{url}: {}", error_chain(&e))
            }
        };
        let mut resp = builder.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let headers: serde_json::Map<String, serde_json::Value> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned().into())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!(
                    "{url}: response larger than {MAX_RESPONSE_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::json!({
            "status": status,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }
}

/// A module's request, as the ABI's JSON describes it.
#[derive(Debug, serde::Deserialize)]
pub struct HttpRequest {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// An error with its causes, so that "connection refused" or our resolver's refusal shows.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> HostAllowlist {
        HostAllowlist::parse(entries).unwrap()
    }

    fn check(a: &HostAllowlist, url: &str) -> Result<(), String> {
        a.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn names_ports_and_wildcards() {
        let a = allow(&["api.example.com", "example.org:8080", "*.data.example.net"]);
        assert!(check(&a, "https://api.example.com/v1").is_ok());
        assert!(check(&a, "https://API.example.com./v1").is_ok());
        assert!(check(&a, "http://example.org:8080/").is_ok());
        assert!(
            check(&a, "http://example.org/").is_err(),
            "port 80 not listed"
        );
        assert!(check(&a, "https://x.data.example.net/").is_ok());
        assert!(
            check(&a, "https://data.example.net/").is_err(),
            "wildcard needs a label"
        );
        assert!(check(&a, "https://evildata.example.net/").is_err());
        assert!(check(&a, "https://api.example.com.evil.org/").is_err());
        assert!(check(&a, "ftp://api.example.com/").is_err());
    }

    #[test]
    fn literal_addresses_need_listing_when_not_public() {
        let a = allow(&["127.0.0.1:8080", "93.184.216.34"]);
        assert!(check(&a, "http://127.0.0.1:8080/").is_ok());
        assert!(check(&a, "http://127.0.0.1:8081/").is_err());
        assert!(check(&a, "http://93.184.216.34/").is_ok());
        let e = check(&a, "http://169.254.169.254/latest/meta-data").unwrap_err();
        assert!(e.contains("allowlist"), "{e}");
        let b = allow(&["*.example.com"]);
        assert!(check(&b, "http://10.0.0.1/").is_err());
    }

    #[test]
    fn refused_address_classes() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused_class(ip).is_some(), "{ip} should be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refused_class(ip), None, "{ip} is public");
        }
        assert_eq!(
            refused_class("169.254.169.254".parse().unwrap()),
            Some("the cloud metadata service")
        );
    }

    fn dest(url: &str) -> Destination {
        Destination::of(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn resolved_private_addresses_are_dropped_unless_listed() {
        let a = allow(&["internal.example.com"]);
        let addrs = vec![
            "10.0.0.5:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
        let to = dest("http://internal.example.com/");
        let e = a.filter_resolved(&to, addrs.clone()).unwrap_err();
        assert!(e.contains("10.0.0.5:80 (private)"), "{e}");
        let b = allow(&["internal.example.com", "10.0.0.5"]);
        assert_eq!(
            b.filter_resolved(&to, addrs).unwrap(),
            vec!["10.0.0.5:0".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn an_entry_without_a_port_grants_the_default_port_only() {
        let a = allow(&["api.example.com", "93.184.216.34"]);
        assert!(check(&a, "http://api.example.com/").is_ok());
        assert!(check(&a, "https://api.example.com/").is_ok());
        assert!(check(&a, "http://api.example.com:80/").is_ok());
        for url in [
            "http://api.example.com:8080/",
            "https://api.example.com:80/",
            "http://api.example.com:443/",
            "http://93.184.216.34:22/",
        ] {
            let e = check(&a, url).unwrap_err();
            assert!(e.contains("allowlist"), "{url}: {e}");
        }
    }

    #[test]
    fn a_name_does_not_inherit_the_ports_of_a_listed_address() {
        let loopback = vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()];
        // The address is listed for 8080 only; the name, for its default port or for 9000.
        let a = allow(&["localhost", "rebound.example.com:9000", "127.0.0.1:8080"]);
        assert!(check(&a, "http://localhost:8080/").is_err());
        for url in ["http://localhost/", "http://rebound.example.com:9000/"] {
            let to = dest(url);
            assert!(a.check_destination(&to).is_ok(), "{url} is listed by name");
            let e = a.filter_resolved(&to, loopback.clone()).unwrap_err();
            assert!(e.contains("loopback"), "{url}: {e}");
        }
        // Listed by name and by address for the same port: the operator meant it.
        let b = allow(&["localhost:8080", "127.0.0.1:8080"]);
        let to = dest("http://localhost:8080/");
        assert!(b.check_destination(&to).is_ok());
        assert_eq!(b.filter_resolved(&to, loopback.clone()).unwrap(), loopback);
        // Public addresses need only the name's entry.
        let public = vec!["93.184.216.34:0".parse::<SocketAddr>().unwrap()];
        assert_eq!(b.filter_resolved(&to, public.clone()).unwrap(), public);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = HostAllowlist::parse(&["https://example.com/"]).unwrap_err();
        assert_eq!(e.entry, "https://example.com/");
        assert!(HostAllowlist::parse(&["*.10.0.0.1"]).is_err());
        assert!(HostAllowlist::parse(&[""]).is_err());
    }
}
