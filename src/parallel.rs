//! Bounded parallel work over a list: a fixed number of scoped threads take items in order and
//! stop taking new ones after the first error, which is returned.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub fn for_each<T: Sync, E: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    if items.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                if let Err(e) = f(item) {
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    next.store(items.len(), Ordering::SeqCst);
                    break;
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Cores available to this process (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_all_and_reports_an_error() {
        let seen = std::sync::Mutex::new(Vec::new());
        super::for_each(&[1, 2, 3, 4], 3, |i| {
            seen.lock().unwrap().push(*i);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(seen.into_inner().unwrap().len(), 4);
        let r = super::for_each(&[1, 2, 3], 2, |i| if *i == 2 { Err(*i) } else { Ok(()) });
        assert_eq!(r, Err(2));
    }
}
