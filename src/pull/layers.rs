//! Layer blobs: downloaded in parallel (bounded), each verified as it streams into the store,
//! after a check that they can fit; a full disk gives back what this pull wrote.

use super::{Client, Descriptor, Digest, Image, Progress, PullError, Reference, Repo, Store};
use crate::store::Begin;

/// Downloads the layer blobs the store lacks, in parallel (bounded).
pub(super) fn fetch_layers(
    store: &Store,
    client: &Client,
    r: &Reference,
    image: &Image,
    max_parallel: usize,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let mut todo: Vec<&Descriptor> = Vec::new();
    for l in &image.layers {
        if !store.has_blob(&l.blob.digest) && !todo.iter().any(|d| d.digest == l.blob.digest) {
            todo.push(&l.blob);
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    check_space(store, r, &todo)?;
    let fetched = std::sync::Mutex::new(Vec::new());
    let result = crate::parallel::for_each(&todo, max_parallel, |d| {
        fetch_one(store, &client.repo(r), d, progress, &fetched)
    });
    if let Err(e) = &result {
        if is_no_space(e) {
            // These bytes cannot become an image on this disk: give the space back, so the
            // next (smaller) pull fits. No complete image names them.
            let fetched = fetched.into_inner().unwrap_or_else(|p| p.into_inner());
            for d in &fetched {
                if let Err(e) = store.remove_blob(d) {
                    tracing::warn!(blob = %d, error = %e, "could not remove a blob of the failed pull");
                }
            }
            tracing::warn!(reference = %r, blobs = fetched.len(), "the store's filesystem is full; removed this pull's downloads");
        }
    }
    result
}

/// Refuses early when the missing layers cannot fit: each needs its compressed size to
/// download and at least as much again unpacked (layers are rarely smaller unpacked).
pub(super) fn check_space(
    store: &Store,
    r: &Reference,
    todo: &[&Descriptor],
) -> Result<(), PullError> {
    let needed: u64 = todo
        .iter()
        .filter_map(|d| d.size)
        .sum::<u64>()
        .saturating_mul(2);
    let free = store.free_space()?;
    if needed > free {
        return Err(PullError::NoSpace {
            reference: r.to_string(),
            root: store.root().display().to_string(),
            needed,
            free,
        });
    }
    Ok(())
}

/// Whether an error comes from a full filesystem (ENOSPC or EDQUOT anywhere in its chain).
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    crate::logging::has_io_cause(e, |io| {
        matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    })
}

fn fetch_one(
    store: &Store,
    repo: &Repo,
    d: &Descriptor,
    progress: &dyn Progress,
    fetched: &std::sync::Mutex<Vec<Digest>>,
) -> Result<(), PullError> {
    let mut ingest = match store.begin_ingest(&d.digest, d.size)? {
        Begin::Present => return Ok(()),
        Begin::Ingest(i) => i,
    };
    progress.start(&d.digest, d.size, ingest.offset());
    let result = repo
        .fetch_blob(d, &mut ingest, &|n| progress.advance(&d.digest, n))
        .map_err(PullError::from);
    if let Err(e) = &result {
        if is_no_space(e) {
            // A partial that cannot complete on this disk only keeps it full.
            ingest.discard();
        }
    }
    result?;
    ingest.commit()?;
    fetched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(d.digest.clone());
    progress.finish(&d.digest);
    Ok(())
}
