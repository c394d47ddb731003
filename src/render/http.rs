//! One HTTP GET for the chart sources (a chart repository's index and archives, an OCI
//! registry's tags, manifests and blobs): bounded in size and time, with the caller's
//! credentials, and errors in one line that never hold a credential.

use std::io::Read;
use std::time::Duration;

use super::chart_repo::Credentials;

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Basic(&'a Credentials),
    /// A registry token (never shown).
    Bearer(&'a str),
}

/// What a server answered: any status (the caller decides what it means).
pub struct Reply {
    pub status: u16,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<String>,
    /// The `rel="next"` target of a `Link` header (a paginated list), as written.
    pub next: Option<String>,
    pub bytes: Vec<u8>,
}

/// GET `url` into memory (at most `limit` bytes), asking for `accept` when given. Only a
/// failure to get an answer is an error. On a thread of its own: the blocking client runs a
/// runtime of its own, which must not start or end on one of the caller's.
pub fn get(url: &str, auth: Auth<'_>, accept: Option<&str>, limit: u64) -> Result<Reply, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let client = reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .timeout(Duration::from_secs(120))
                .user_agent(concat!("kubectl-gitops/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot make an HTTP client: {}", chain(&e)))?;
            let mut request = client.get(url);
            request = match auth {
                Auth::None => request,
                Auth::Basic(a) => request.basic_auth(&a.username, Some(&a.password)),
                Auth::Bearer(token) => request.bearer_auth(token),
            };
            if let Some(accept) = accept {
                request = request.header(reqwest::header::ACCEPT, accept);
            }
            let response = request.send().map_err(|e| {
                format!(
                    "cannot reach {url}: {}; check that the repository is reachable from \
                     this machine (a proxy is taken from HTTPS_PROXY) and that its URL is right",
                    chain(&e)
                )
            })?;
            let status = response.status().as_u16();
            let header = |name: reqwest::header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let challenge = header(reqwest::header::WWW_AUTHENTICATE);
            let next = header(reqwest::header::LINK).and_then(|l| next_link(&l));
            let mut bytes = Vec::new();
            response
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading {url}: {e}"))?;
            if bytes.len() as u64 > limit {
                return Err(format!("{url} is larger than {} MiB", limit >> 20));
            }
            Ok(Reply {
                status,
                challenge,
                next,
                bytes,
            })
        })
        .join()
        .unwrap_or_else(|_| Err(format!("fetching {url} failed")))
    })
}

/// `<target>` of the `rel="next"` entry of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"') == "next")
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// An error and its causes, one line, without reqwest's and hyper's generic wrappers ("error
/// sending request for url (..)", "client error (Connect)") where a cause says more.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    let generic =
        |p: &String| p.starts_with("error sending request") || p.starts_with("client error");
    if parts.iter().any(|p| !generic(p)) {
        parts.retain(|p| !generic(p));
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_of_a_link_header() {
        assert_eq!(
            next_link(r#"</v2/charts/web/tags/list?last=0.9.0&n=100>; rel="next""#).as_deref(),
            Some("/v2/charts/web/tags/list?last=0.9.0&n=100")
        );
        assert_eq!(
            next_link(r#"<https://a/prev>; rel="prev", <https://a/next>; rel=next"#).as_deref(),
            Some("https://a/next")
        );
        assert_eq!(next_link(r#"<https://a/prev>; rel="prev""#), None);
    }
}
