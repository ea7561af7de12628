//! A commit's rows decoded once per model, however many subscriptions of that model read them.
//!
//! Each [`Subscription`](super::Subscription) decodes the rows it reads into its model. When
//! several subscriptions of one model read a commit, the first to reach a row decodes it and
//! leaves a clone in the batch; the others clone that, and the last takes it. The hub counts
//! the readers of each model before any of them can read the commit, so a model with a single
//! subscription decodes as it always did: nothing is kept, nothing cloned.
//!
//! The counts are a hint, never a condition of correctness: a reader that finds no value
//! decodes the row itself, and a value no reader takes (a subscription that dropped its
//! changes unread, or that received only some of a commit's changes) is freed with the batch.

use std::any::{Any, TypeId};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The decoded rows of a batch, shared by the subscriptions of one model.
#[derive(Default)]
pub(crate) struct Shared {
    /// For each model that more than one subscription decodes, how many read the batch: set
    /// by the hub before it hands the batch to any of them.
    readers: OnceLock<Box<[(TypeId, usize)]>>,
    /// The rows of the first model to share, one slot per change of the batch.
    decoded: OnceLock<Decoded>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("readers", &self.readers.get())
            .finish_non_exhaustive()
    }
}

/// One model's slots: a `Box<[Mutex<Slot<M>>]>` and the `TypeId` of `M`.
struct Decoded {
    model: TypeId,
    slots: Box<dyn Any + Send + Sync>,
}

/// A row of the batch as one model.
struct Slot<M> {
    /// How many of the model's readers have reached the row.
    read: usize,
    /// The row, decoded by a reader before the last one.
    value: Option<M>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Counts the readers of the batch that decode it: the model of each (`TypeId` of the
    /// model type). Called once, before any of them can read the batch.
    pub fn count_readers(&self, models: impl Iterator<Item = TypeId>) {
        let mut counts: Vec<(TypeId, usize)> = Vec::new();
        for model in models {
            match counts.iter_mut().find(|(m, _)| *m == model) {
                Some((_, n)) => *n += 1,
                None => counts.push((model, 1)),
            }
        }
        counts.retain(|&(_, n)| n > 1);
        if !counts.is_empty() {
            let _ = self.readers.set(counts.into_boxed_slice());
        }
    }

    /// How many subscriptions of `model` read the batch (1 when it was not counted).
    fn readers(&self, model: TypeId) -> usize {
        self.readers
            .get()
            .and_then(|counts| counts.iter().find(|(m, _)| *m == model))
            .map_or(1, |&(_, n)| n)
    }

    /// The change at `index` (of `len` in the batch) as an `M`: decoded by `decode`, or
    /// cloned from what another reader decoded, or taken from it by the last reader.
    pub fn decode<M: Clone + Send + 'static>(
        &self,
        len: usize,
        index: usize,
        decode: impl FnOnce() -> Result<M, String>,
    ) -> Result<M, String> {
        let model = TypeId::of::<M>();
        let readers = self.readers(model);
        if readers < 2 {
            return decode();
        }
        let decoded = self.decoded.get_or_init(|| Decoded {
            model,
            slots: Box::new(
                (0..len)
                    .map(|_| {
                        Mutex::new(Slot::<M> {
                            read: 0,
                            value: None,
                        })
                    })
                    .collect::<Box<[_]>>(),
            ),
        });
        // Another model shares this batch's slots: this one decodes on its own.
        let Some(slots) = (decoded.model == model)
            .then(|| decoded.slots.downcast_ref::<Box<[Mutex<Slot<M>>]>>())
            .flatten()
        else {
            return decode();
        };
        let slot = &slots[index];
        {
            let mut slot = lock(slot);
            slot.read += 1;
            let last = slot.read >= readers;
            match &slot.value {
                Some(_) if last => return Ok(slot.value.take().expect("just seen")),
                Some(value) => return Ok(value.clone()),
                None if last => {
                    drop(slot);
                    return decode();
                }
                None => {}
            }
        }
        // Decoded without the lock: a reader reaching the row meanwhile decodes it too, rather
        // than wait.
        let value = decode()?;
        let mut slot = lock(slot);
        if slot.value.is_none() && slot.read < readers {
            slot.value = Some(value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn shared(readers: usize) -> Shared {
        let shared = Shared::default();
        shared.count_readers(std::iter::repeat_n(TypeId::of::<String>(), readers));
        shared
    }

    #[test]
    fn one_reader_decodes_and_keeps_nothing() {
        let shared = shared(1);
        let decoded = Cell::new(0);
        let read = || {
            shared.decode(2, 0, || {
                decoded.set(decoded.get() + 1);
                Ok("row".to_owned())
            })
        };
        assert_eq!(read(), Ok("row".to_owned()));
        assert_eq!(read(), Ok("row".to_owned()));
        assert_eq!(decoded.get(), 2, "each read decodes: nothing is kept");
        assert!(shared.decoded.get().is_none());
    }

    #[test]
    fn readers_of_one_model_decode_a_row_once_and_the_last_takes_it() {
        let shared = shared(3);
        let decoded = Cell::new(0);
        let read = |index| {
            shared.decode(2, index, || {
                decoded.set(decoded.get() + 1);
                Ok(format!("row {index}"))
            })
        };
        for _ in 0..3 {
            assert_eq!(read(1), Ok("row 1".to_owned()));
        }
        assert_eq!(decoded.get(), 1);
        let slots = shared.decoded.get().expect("shared").slots.as_ref();
        let slots = slots
            .downcast_ref::<Box<[Mutex<Slot<String>>]>>()
            .expect("String slots");
        assert_eq!(lock(&slots[1]).value, None, "taken by the last reader");
        // A reader beyond the count (the count is a hint) decodes on its own.
        assert_eq!(read(1), Ok("row 1".to_owned()));
        assert_eq!(decoded.get(), 2);
    }

    #[test]
    fn a_row_that_does_not_decode_is_not_kept_and_each_reader_is_told() {
        let shared = shared(2);
        let attempts = Cell::new(0);
        let read = || {
            shared.decode::<String>(1, 0, || {
                attempts.set(attempts.get() + 1);
                Err("no".to_owned())
            })
        };
        assert_eq!(read(), Err("no".to_owned()));
        assert_eq!(read(), Err("no".to_owned()));
        assert_eq!(attempts.get(), 2);
    }

    #[test]
    fn another_model_of_the_same_batch_decodes_on_its_own() {
        let shared = Shared::default();
        shared.count_readers(
            [TypeId::of::<String>(), TypeId::of::<String>()]
                .into_iter()
                .chain([TypeId::of::<Vec<u8>>(), TypeId::of::<Vec<u8>>()]),
        );
        let bytes = Cell::new(0);
        assert_eq!(
            shared.decode(1, 0, || Ok("text".to_owned())),
            Ok("text".into())
        );
        for _ in 0..2 {
            let read = shared.decode(1, 0, || {
                bytes.set(bytes.get() + 1);
                Ok(vec![1u8])
            });
            assert_eq!(read, Ok(vec![1u8]));
        }
        assert_eq!(bytes.get(), 2, "the slots are the first model's");
        // The first model's second reader still finds its row.
        assert_eq!(
            shared.decode(1, 0, || Err::<String, _>("decoded again".into())),
            Ok("text".into())
        );
    }
}
