//! Where a LiteLLM deployment's requests go, as an Envoy cluster: its `api_base` (an
//! `os.environ/` reference resolved at import) parsed into scheme, host and port, named so that
//! two different upstreams never share a cluster.

use std::collections::BTreeMap;

/// An upstream address from an `api_base`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Upstream {
    /// `https` or `http`.
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// Port (explicit, or the scheme's default).
    pub port: u16,
    /// Path after the authority, without a trailing `/` (LiteLLM appends the endpoint to it).
    pub path: String,
}

impl Upstream {
    /// Parses an `api_base` such as `https://eu.openai.azure.com/` or `http://0.0.0.0:8001/v1`.
    /// A value without `http://` or `https://`, or whose host is not a host name or address
    /// (`your_ollama_api_base`, `<your-azure-endpoint>`: placeholders copied from an example),
    /// is refused: LiteLLM's HTTP client cannot call it either, and a cluster made from it
    /// would point nowhere.
    pub fn parse(base: &str) -> Result<Upstream, String> {
        let placeholder = if base.contains('<') || base.contains('>') {
            " (it looks like a placeholder from an example)"
        } else {
            ""
        };
        let Some((scheme, rest)) = base.split_once("://") else {
            return Err(format!(
                "{base:?} is not a URL{placeholder}: it has no http:// or https://, which \
                 LiteLLM's HTTP client needs too; write the endpoint's address, such as \
                 https://<host>[:<port>][/<path>]"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{base:?}: only http and https upstreams can be routed"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, rest)) => (host, rest.strip_prefix(':')),
                None => return Err(format!("{base:?}: unclosed [ in the host")),
            },
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("{base:?}: the port {port:?} is not a number"))?,
            None if scheme == "http" => 80,
            None => 443,
        };
        if host.is_empty() {
            return Err(format!("{base:?} has no host"));
        }
        let valid = if authority.starts_with('[') {
            host.chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        } else {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        };
        if !valid {
            return Err(format!(
                "{base:?}: {host:?} is not a host name or address{placeholder}; write the \
                 endpoint's address"
            ));
        }
        Ok(Upstream {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_string(),
        })
    }

    /// `scheme://host:port`, as printed for the operator.
    pub fn address(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// The port unless it is the scheme's default.
    fn explicit_port(&self) -> Option<u16> {
        let default = if self.scheme == "http" { 80 } else { 443 };
        (self.port != default).then_some(self.port)
    }
}

/// What an unset `os.environ/` reference of an `api_base` tells the user to do instead.
pub const ADDRESS_HINT: &str = "(the address names the Envoy cluster) or write the address itself";

/// Resolves LiteLLM's `os.environ/NAME` references with `env`; other values are returned as
/// they are. An unset variable is an error naming it, followed by `hint` (what else to do).
pub fn resolve_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
    at: &str,
    hint: &str,
) -> Result<String, String> {
    match value.strip_prefix("os.environ/") {
        Some(name) => env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!(
                "{at}: {value} is not set in this environment; set {name} before importing {hint}"
            )
        }),
        None => Ok(value.to_string()),
    }
}

fn sanitized(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The Envoy clusters of one import: one per distinct upstream, named after the provider and
/// the upstream's host (and port), with a number added where two names would collide.
#[derive(Debug, Default)]
pub struct Clusters {
    /// Cluster name → what it must point to (an address, or the provider's default).
    pub by_name: BTreeMap<String, String>,
    by_upstream: BTreeMap<(String, Option<Upstream>), String>,
}

impl Clusters {
    /// The cluster of `provider` at `upstream` (`None`: the provider's own API, at `default`
    /// when Tollgate knows it).
    pub fn cluster_for(
        &mut self,
        provider: &str,
        upstream: Option<&Upstream>,
        default: Option<&Upstream>,
    ) -> String {
        let key = (provider.to_string(), upstream.cloned());
        if let Some(name) = self.by_upstream.get(&key) {
            return name.clone();
        }
        let with_route = |u: &Upstream| match super::reach::path_rewrite(provider, u) {
            Some(rewrite) => format!("{} (route: {rewrite})", u.address()),
            None => u.address(),
        };
        let (base, target) = match upstream {
            None => (
                sanitized(provider),
                default.map_or_else(
                    || format!("{provider}'s API: no default address known, define it"),
                    with_route,
                ),
            ),
            Some(u) => {
                let mut name = format!("{}-{}", sanitized(provider), sanitized(&u.host));
                if let Some(port) = u.explicit_port() {
                    name.push_str(&format!("-{port}"));
                }
                (name, with_route(u))
            }
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.by_name.contains_key(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.by_name.insert(name.clone(), target);
        self.by_upstream.insert(key, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_hosts_and_schemes_keep_upstreams_apart() {
        let mut clusters = Clusters::default();
        let a = Upstream::parse("http://0.0.0.0:8001").unwrap();
        let b = Upstream::parse("http://0.0.0.0:8002/v1/").unwrap();
        let eu = Upstream::parse("https://eu.openai.azure.com/").unwrap();
        let us = Upstream::parse("https://US.openai.azure.com").unwrap();
        assert_eq!(b.path, "/v1");
        assert_eq!((us.host.as_str(), us.port), ("us.openai.azure.com", 443));
        let names = [
            clusters.cluster_for("openai", Some(&a), None),
            clusters.cluster_for("openai", Some(&b), None),
            clusters.cluster_for("azure", Some(&eu), None),
            clusters.cluster_for("azure", Some(&us), None),
            clusters.cluster_for("openai", None, None),
        ];
        assert_eq!(
            names,
            [
                "openai-0-0-0-0-8001",
                "openai-0-0-0-0-8002",
                "azure-eu-openai-azure-com",
                "azure-us-openai-azure-com",
                "openai"
            ]
        );
        assert_eq!(
            clusters.cluster_for("openai", Some(&a), None),
            names[0],
            "same upstream, same cluster"
        );
        assert_eq!(
            clusters.by_name["openai-0-0-0-0-8002"],
            "http://0.0.0.0:8002"
        );
        // Two hosts that sanitize alike still get two clusters.
        let dotted = Upstream::parse("https://a.b").unwrap();
        let dashed = Upstream::parse("https://a-b").unwrap();
        assert_ne!(
            clusters.cluster_for("openai", Some(&dotted), None),
            clusters.cluster_for("openai", Some(&dashed), None)
        );
        assert_eq!(Upstream::parse("http://[::1]:9000/v1").unwrap().port, 9000);
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("http://x:port").is_err());
        assert_eq!(
            Upstream::parse("http://my_vllm:8000").unwrap().host,
            "my_vllm",
            "container names may hold underscores"
        );
    }

    #[test]
    fn placeholders_copied_from_examples_are_refused_naming_what_to_write() {
        // LiteLLM's docs (configs.md, load_balancing.md) show these as api_base.
        let bare = Upstream::parse("your_ollama_api_base").unwrap_err();
        assert!(
            bare.contains("is not a URL") && bare.contains("https://"),
            "{bare}"
        );
        let angled = Upstream::parse("<your-azure-endpoint>").unwrap_err();
        assert!(angled.contains("placeholder"), "{angled}");
        let host = Upstream::parse("https://<your-azure-endpoint>/").unwrap_err();
        assert!(
            host.contains("is not a host name") && host.contains("placeholder"),
            "{host}"
        );
        assert!(Upstream::parse("https://my host").is_err());
    }

    #[test]
    fn environment_references_resolve_or_name_the_variable() {
        let env = |name: &str| (name == "BASE").then(|| "https://x.example".to_string());
        assert_eq!(
            resolve_env("os.environ/BASE", &env, "a", ADDRESS_HINT).unwrap(),
            "https://x.example"
        );
        assert_eq!(
            resolve_env("https://y", &env, "a", ADDRESS_HINT).unwrap(),
            "https://y"
        );
        let missing = resolve_env(
            "os.environ/NOPE",
            &env,
            "model_list[0].api_base",
            ADDRESS_HINT,
        )
        .unwrap_err();
        assert!(missing.contains("NOPE") && missing.starts_with("model_list[0].api_base"));
    }
}
