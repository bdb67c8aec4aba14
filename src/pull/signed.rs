//! Who signed an image, under the policy in force at this start: kept signatures first, the
//! signature sources when they do not satisfy it. Runs before any layer is fetched.

use super::{Client, Digest, Image, PullError, Reference, Request, Store};
use crate::trust::{self, Policy, Requirement, Scope, Signatures, Trust, TrustError, Verdict};

/// The policy's scope for one image, ready to judge sets of signatures of its manifests: the
/// one the reference names and, for an index, the platform's (a signed index pins its
/// manifests by digest).
struct Judge<'a> {
    reference: &'a Reference,
    policy: &'a Policy,
    scope: Scope,
    requirements: &'a [Requirement],
    digests: Vec<Digest>,
}

impl<'a> Judge<'a> {
    /// `None` without a policy: then everything is accepted.
    fn new(trust: &'a Trust, reference: &'a Reference, image: &Image) -> Option<Judge<'a>> {
        let policy = trust.policy()?;
        let (scope, requirements) = policy.requirements_for(reference);
        let mut digests = vec![image.digest.clone()];
        if image.manifest != image.digest {
            digests.push(image.manifest.clone());
        }
        Some(Judge {
            reference,
            policy,
            scope,
            requirements,
            digests,
        })
    }

    fn needs_signatures(&self) -> bool {
        self.requirements.iter().any(Requirement::needs_signatures)
    }

    /// The signatures the store keeps for each manifest (none where it keeps none). A damaged
    /// file counts as none, so the signature sources are asked again and their answer
    /// replaces it.
    fn kept(&self, store: &Store) -> Result<Vec<Signatures>, PullError> {
        self.digests
            .iter()
            .map(|d| match store.read_signatures(d, trust::signatures_limit())? {
                None => Ok(Signatures::default()),
                Some(bytes) => Ok(Signatures::from_json(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(digest = %d, error = %e, "the signatures kept in the store are damaged; ignoring them");
                    Signatures::default()
                })),
            })
            .collect()
    }

    /// The verdict on `sets`, one per manifest.
    fn verdict(&self, sets: &[Signatures]) -> Verdict {
        let signed: Vec<(Digest, &Signatures)> = self.digests.iter().cloned().zip(sets).collect();
        trust::evaluate(
            self.reference,
            self.policy.path.clone(),
            self.scope.clone(),
            self.requirements,
            &signed,
        )
    }
}

/// Fetches the signatures of each manifest (`budgeted`: within the registry budget).
pub(super) type FetchSignatures<'f> =
    &'f dyn Fn(&[Digest], bool) -> Result<Vec<Signatures>, PullError>;

/// The policy's verdict on `image`: from the signatures the store keeps, else (when `fetch`
/// is given: not under `--pull=never`) from where `fetch` reads them (the lookaside and
/// attachments, or a loaded source), within the registry budget when the store holds every
/// layer. Signatures that satisfy the policy are kept for the next start.
pub(super) fn check_trust(
    store: &Store,
    trust: &Trust,
    reference: &Reference,
    image: &Image,
    fetch: Option<FetchSignatures>,
) -> Result<(), PullError> {
    let Some(judge) = Judge::new(trust, reference, image) else {
        return Ok(());
    };
    let needs = judge.needs_signatures();
    let kept = if needs {
        judge.kept(store)?
    } else {
        vec![Signatures::default(); judge.digests.len()]
    };
    let mut verdict = judge.verdict(&kept);
    if let Some(fetch) = fetch.filter(|_| !verdict.accepted() && needs) {
        // With every layer at hand, the store could serve: the sources get the budget.
        let could_serve = image.layers.iter().all(|l| store.has_blob(&l.blob.digest));
        let fresh = fetch(&judge.digests, could_serve)?;
        verdict = judge.verdict(&fresh);
        if verdict.accepted() {
            for (d, sigs) in judge
                .digests
                .iter()
                .zip(&fresh)
                .filter(|(_, s)| !s.is_empty())
            {
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
        tracing::info!(reference = %reference, kind = a.kind, key = %a.key, identity = %a.identity, digest = %a.digest, "signature verified");
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
    match Judge::new(trust, reference, image) {
        Some(judge) => Ok(Some(judge.verdict(&judge.kept(store)?))),
        None => Ok(None),
    }
}

/// Each manifest's signatures from where registries.d says they are. One that cannot be read
/// is an empty set that says why, so the verdict names it.
pub(super) fn fetch_signatures(
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
