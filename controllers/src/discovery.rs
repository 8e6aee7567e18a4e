//! Which resources the controllers act on, from the API server's discovery documents.

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

/// One served resource (preferred version of its group).
#[derive(Clone, Debug)]
pub struct Resource {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    /// Whether discovery lists `verb` for the resource.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

fn resource((ar, caps): (ApiResource, ApiCapabilities)) -> Resource {
    Resource {
        ar,
        namespaced: matches!(caps.scope, Scope::Namespaced),
        verbs: caps.operations,
    }
}

/// Every resource of every group, at the group's preferred version.
pub async fn resources(client: &Client) -> Result<Vec<Resource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        out.extend(group.recommended_resources().into_iter().map(resource));
    }
    Ok(out)
}

/// Resources the garbage collector tracks: list, watch and delete (upstream `GetDeletableResources`).
pub fn deletable(all: &[Resource]) -> Vec<Resource> {
    all.iter()
        .filter(|r| {
            r.supports(verbs::LIST) && r.supports(verbs::WATCH) && r.supports(verbs::DELETE)
        })
        .cloned()
        .collect()
}
