//! Who signed an image, under the policy in force at this start: kept signatures first, the
//! signature sources when they do not satisfy it. Runs before any layer is fetched.

use super::{Client, Digest, Image, PullError, PullPolicy, Reference, Request, Store};
use crate::trust::{self, Requirement, Signatures, Trust, TrustError, Verdict};

/// The manifests a signature may be for: the one the reference names and, for an index, the
/// platform's (a signed index pins its manifests by digest).
fn signed_digests(image: &Image) -> Vec<Digest> {
    let mut out = vec![image.digest.clone()];
    if image.manifest != image.digest {
        out.push(image.manifest.clone());
    }
    out
}

/// The signatures the store keeps for `d` (none if it keeps none). A damaged file counts as
/// none, so the signature sources are asked again and their answer replaces it.
fn kept_signatures(store: &Store, d: &Digest) -> Result<Signatures, PullError> {
    match store.read_signatures(d, trust::signatures_limit())? {
        None => Ok(Signatures::default()),
        Some(bytes) => Ok(Signatures::from_json(&bytes).unwrap_or_else(|e| {
            tracing::warn!(digest = %d, error = %e, "the signatures kept in the store are damaged; ignoring them");
            Signatures::default()
        })),
    }
}

/// The policy's verdict on `image`: from the signatures the store keeps, else (unless
/// `--pull=never`) from the lookaside and attachments, within the registry budget when the
/// store holds the image. Signatures that satisfy the policy are kept for the next start.
pub(super) fn check_trust(
    store: &Store,
    client: &Client,
    req: &Request,
    image: &Image,
    stored: bool,
) -> Result<(), PullError> {
    let r = req.reference;
    let Some((scope, requirements)) = req.trust.requirements(r) else {
        return Ok(());
    };
    let policy = req
        .trust
        .policy()
        .map(|p| p.path.clone())
        .unwrap_or_default();
    let digests = signed_digests(image);
    let judge = |sets: &[Signatures]| {
        let signed: Vec<(Digest, &Signatures)> = digests.iter().cloned().zip(sets).collect();
        trust::evaluate(r, policy.clone(), scope.clone(), requirements, &signed)
    };
    let needs = requirements.iter().any(Requirement::needs_signatures);
    let kept = if needs {
        digests
            .iter()
            .map(|d| kept_signatures(store, d))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![Signatures::default(); digests.len()]
    };
    let mut verdict = judge(&kept);
    if !verdict.accepted() && needs && req.policy != PullPolicy::Never {
        // With every layer at hand, the store could serve: the sources get the budget.
        let could_serve = stored || image.layers.iter().all(|l| store.has_blob(&l.blob.digest));
        let fresh = fetch_signatures(client, req, &digests, could_serve)?;
        verdict = judge(&fresh);
        if verdict.accepted() {
            for (d, sigs) in digests.iter().zip(&fresh).filter(|(_, s)| !s.is_empty()) {
                store.put_signatures(d, &sigs.to_json())?;
            }
        }
    }
    if !verdict.accepted() {
        return Err(PullError::Refused {
            verdict: Box::new(verdict),
            image: Box::new(image.clone()),
        });
    }
    for a in verdict
        .outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().and_then(Option::as_ref))
    {
        tracing::info!(reference = %r, kind = a.kind, key = %a.key, identity = %a.identity, digest = %a.digest, "signature verified");
    }
    Ok(())
}

/// What the policy in force says of a stored image, from the signatures the store keeps (no
/// network): for `inspect`. `None` without a policy.
pub fn stored_verdict(
    store: &Store,
    trust: &Trust,
    reference: &Reference,
    image: &Image,
) -> Result<Option<Verdict>, PullError> {
    let Some((scope, requirements)) = trust.requirements(reference) else {
        return Ok(None);
    };
    let digests = signed_digests(image);
    let kept = digests
        .iter()
        .map(|d| kept_signatures(store, d))
        .collect::<Result<Vec<_>, _>>()?;
    let signed: Vec<(Digest, &Signatures)> = digests.iter().cloned().zip(&kept).collect();
    let policy = trust.policy().map(|p| p.path.clone()).unwrap_or_default();
    Ok(Some(trust::evaluate(
        reference,
        policy,
        scope,
        requirements,
        &signed,
    )))
}

/// Each manifest's signatures from where registries.d says they are. One that cannot be read
/// is an empty set that says why, so the verdict names it.
fn fetch_signatures(
    client: &Client,
    req: &Request,
    digests: &[Digest],
    budgeted: bool,
) -> Result<Vec<Signatures>, PullError> {
    let r = req.reference;
    let sources = req.trust.sources(r)?;
    let repo = client.repo(r);
    let one = |d: &Digest| trust::fetch(client, &repo, &sources, r, d);
    digests
        .iter()
        .map(|d| {
            let fetched = if budgeted {
                client.within_budget(|| one(d))
            } else {
                one(d)
            };
            match fetched {
                Ok(s) => Ok(s),
                Err(TrustError::Fetch { location, source }) => Ok(Signatures {
                    looked: vec![format!(
                        "{location} (unreadable: {})",
                        crate::logging::chain(source.as_ref())
                    )],
                    ..Signatures::default()
                }),
                Err(e) => Err(e.into()),
            }
        })
        .collect()
}
