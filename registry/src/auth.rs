//! Authentication: `WWW-Authenticate` challenges, basic credentials,
//! bearer tokens (fetched once per endpoint and scope, shared by concurrent
//! requests, renewed before they expire), and credential verification for
//! `login`.

use crate::client::{error_message, lock, Client, Endpoint, Failed, Scope};
use crate::config::{is_loopback, Credential};
use crate::error::error_chain;
use crate::reference::api_host;
use crate::{credentials, Error, Result};
use base64::Engine as _;
use reqwest::header::{HeaderMap, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

pub(crate) struct Token {
    value: String,
    expires: Instant,
}

pub(crate) type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

impl Client {
    /// Credentials for a registry or mirror name: the config's explicit
    /// ones, else docker's `config.json` (helpers included). Cached.
    pub(crate) async fn credentials(&self, name: &str) -> Result<Option<Credential>> {
        let cfg = &self.inner.config;
        if let Some(c) = cfg.credentials.get(name) {
            return Ok(Some(c.clone()));
        }
        let mut cache = self.inner.creds.lock().await;
        if let Some(c) = cache.get(name) {
            return Ok(c.clone());
        }
        let found = match &cfg.docker_config_dir {
            Some(dir) => credentials::lookup(dir, name).await?,
            None => None,
        };
        cache.insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// Forget cached credentials and tokens for a registry (after login or
    /// logout).
    pub(crate) async fn forget_registry(&self, name: &str) {
        self.inner.creds.lock().await.remove(name);
        let host = api_host(name).to_string();
        lock(&self.inner.tokens).retain(|(h, _), _| *h != host && h != name);
    }

    /// The `Authorization` header for a request, the credential behind it,
    /// and whether a token was fetched just now (a cached one may be stale).
    pub(crate) async fn authorization(
        &self,
        ep: &Endpoint,
        challenge: &Challenge,
        scope: &Scope,
    ) -> Result<(Option<String>, Option<Credential>, bool)> {
        let cred = match challenge {
            Challenge::None => return Ok((None, None, true)),
            _ => self.credentials(&ep.name).await?,
        };
        match challenge {
            Challenge::None => Ok((None, None, true)),
            Challenge::Basic => Ok((cred.as_ref().map(basic), cred, true)),
            Challenge::Bearer { realm, service } => {
                let key = (ep.host.clone(), scope.key());
                let slot = lock(&self.inner.tokens).entry(key).or_default().clone();
                let mut slot = slot.lock().await;
                if let Some(t) = slot.as_ref().filter(|t| t.expires > Instant::now()) {
                    return Ok((Some(format!("Bearer {}", t.value)), cred, false));
                }
                let (value, ttl) = self
                    .fetch_token(
                        &ep.name,
                        realm,
                        service.as_deref(),
                        Some(scope),
                        cred.as_ref(),
                    )
                    .await?;
                let header = format!("Bearer {value}");
                *slot = Some(Token {
                    value,
                    expires: Instant::now() + ttl,
                });
                Ok((Some(header), cred, true))
            }
        }
    }

    /// Drop a token the registry refused (only if it is still the one
    /// that was used, so a concurrent refresh is kept).
    pub(crate) async fn forget_token(&self, ep: &Endpoint, scope: &Scope, used: Option<&str>) {
        let slot = lock(&self.inner.tokens)
            .get(&(ep.host.clone(), scope.key()))
            .cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            let same = slot.as_ref().map(|t| format!("Bearer {}", t.value));
            if same.as_deref() == used || used.is_none() {
                *slot = None;
            }
        }
    }

    /// Ask a token server for a bearer token. Returns it and its lifetime.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&Scope>,
        cred: Option<&Credential>,
    ) -> Result<(String, Duration)> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| Error::Protocol {
            registry: registry.to_string(),
            message: format!("invalid token realm {realm:?}: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.map(|s| s.0.as_slice()).unwrap_or_default() {
                q.append_pair("scope", s);
            }
            if let Some(c) = cred {
                q.append_pair("account", &c.username);
            }
        }
        let realm_host = url.host_str().unwrap_or_default().to_string();
        let http = self.http(is_loopback(&realm_host), &self.inner.config.ca_files)?;
        let attempts = self.inner.config.max_attempts;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        // The request is retried by `retrying`; a body that breaks off or
        // comes up short is fetched again by `refetching`.
        let what = format!("token from {realm_host}");
        let bytes = self
            .refetching(&what, || async {
                let resp = self
                    .retrying(registry, attempts, || {
                        let rb = http.get(url.clone());
                        let rb = match cred {
                            Some(c) => rb.header(AUTHORIZATION, basic(c)),
                            None => rb,
                        };
                        rb.send()
                    })
                    .await?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    let msg = error_message(resp).await;
                    return Err(Failed::Final(unauthorized(
                        registry,
                        &format!("token server {realm_host}: {msg}"),
                        cred,
                    )));
                }
                if !status.is_success() {
                    let msg = error_message(resp).await;
                    return Err(Failed::Final(Error::Status {
                        registry: registry.to_string(),
                        status: status.as_u16(),
                        method: "GET".into(),
                        url: realm.to_string(),
                        message: msg,
                    }));
                }
                let declared = resp.content_length();
                let bytes = resp.bytes().await.map_err(|e| {
                    Failed::Body(Error::Transport {
                        registry: registry.to_string(),
                        message: format!(
                            "token server {realm_host}: reading the body of GET {realm}: {}",
                            error_chain(&e)
                        ),
                    })
                })?;
                if declared.is_some_and(|l| (bytes.len() as u64) < l) {
                    return Err(Failed::Body(Error::SizeMismatch {
                        what: format!("token from GET {realm}"),
                        expected: declared.unwrap_or_default(),
                        actual: bytes.len() as u64,
                    }));
                }
                Ok(bytes)
            })
            .await?;
        let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            registry: registry.to_string(),
            message: format!("token server {realm_host}: invalid JSON: {e}"),
        })?;
        let value = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Protocol {
                registry: registry.to_string(),
                message: format!("token server {realm_host} returned no token"),
            })?;
        // Renew a little early; 60 s is the spec's default lifetime.
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).max(10) - 5);
        Ok((value, ttl))
    }

    /// Check credentials against a registry's `/v2/` (basic) or token
    /// server (bearer). Used by `login`.
    pub(crate) async fn verify_credentials(&self, registry: &str, cred: &Credential) -> Result<()> {
        let ep = self.registry_endpoint(registry);
        let probe = self.probe(&ep).await?;
        let challenge = lock(&probe.challenge).clone();
        match challenge {
            Challenge::None => Ok(()),
            Challenge::Bearer { realm, service } => self
                .fetch_token(registry, &realm, service.as_deref(), None, Some(cred))
                .await
                .map(|_| ()),
            Challenge::Basic => {
                let http = self.http(probe.tls_insecure, &ep.ca_files)?;
                let url = format!("{}/v2/", probe.base);
                let resp = self
                    .retrying(registry, self.inner.config.max_attempts, || {
                        http.get(&url).header(AUTHORIZATION, basic(cred)).send()
                    })
                    .await?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    let msg = error_message(resp).await;
                    Err(unauthorized(registry, &msg, Some(cred)))
                }
            }
        }
    }
}

fn basic(c: &Credential) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(crate) fn unauthorized(registry: &str, server_msg: &str, cred: Option<&Credential>) -> Error {
    let who = match cred {
        Some(c) => format!("credentials of user {:?} rejected", c.username),
        None => "no credentials configured (log in first)".to_string(),
    };
    let message = if server_msg.is_empty() {
        who
    } else {
        format!("{who}: {server_msg}")
    };
    Error::Unauthorized {
        registry: registry.to_string(),
        message,
    }
}

/// Parse `WWW-Authenticate`: the first Bearer or Basic challenge.
pub(crate) fn parse_challenge(h: &HeaderMap) -> Challenge {
    for v in h.get_all(WWW_AUTHENTICATE) {
        let Ok(s) = v.to_str() else { continue };
        let s = s.trim();
        let (scheme, params) = s.split_once(' ').unwrap_or((s, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let p = parse_params(params);
            if let Some(realm) = p.get("realm") {
                return Challenge::Bearer {
                    realm: realm.clone(),
                    service: p.get("service").cloned(),
                };
            }
        }
    }
    Challenge::None
}

/// `k="v", k2=v2` (quoted strings may contain commas and `\"`).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges() {
        let mut h = HeaderMap::new();
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
            ),
        );
        assert_eq!(
            parse_challenge(&h),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        let mut h = HeaderMap::new();
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="x""#),
        );
        assert_eq!(parse_challenge(&h), Challenge::Basic);
        assert_eq!(parse_challenge(&HeaderMap::new()), Challenge::None);
        let p = parse_params(r#"realm=http://x/t, service="a\"b,c""#);
        assert_eq!(p["realm"], "http://x/t");
        assert_eq!(p["service"], "a\"b,c");
    }
}
