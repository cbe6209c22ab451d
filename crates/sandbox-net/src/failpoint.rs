//! Failure injection for the tests (the `failpoints` feature): a failure before the N-th
//! journalled step of attach, add-endpoint, set-rate or detach. Without the feature a
//! [`FailAt`] holds nothing and never fires, and none of it is in the API:
//! `AttachOptions::fail_at_step`, the `*_with_failpoint` functions and `Error::Injected`
//! exist only with the feature.

/// The step an operation fails before, counted by that operation; or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailAt {
    #[cfg(feature = "failpoints")]
    step: Option<usize>,
}

impl FailAt {
    /// No injected failure.
    pub(crate) const NEVER: FailAt = FailAt {
        #[cfg(feature = "failpoints")]
        step: None,
    };

    /// Fail before `step` (None: never).
    #[cfg(feature = "failpoints")]
    pub(crate) fn before(step: Option<usize>) -> FailAt {
        FailAt { step }
    }

    /// Whether the operation fails before its step `i`.
    pub(crate) fn hits(self, i: usize) -> bool {
        #[cfg(feature = "failpoints")]
        return self.step == Some(i);
        #[cfg(not(feature = "failpoints"))]
        {
            let _ = i;
            false
        }
    }

    /// Whether a failure is asked for at all.
    pub(crate) fn is_set(self) -> bool {
        #[cfg(feature = "failpoints")]
        return self.step.is_some();
        #[cfg(not(feature = "failpoints"))]
        false
    }

    /// The failure among the `n` steps that follow the first `done`, counted from them.
    pub(crate) fn within(self, done: usize, n: usize) -> FailAt {
        #[cfg(feature = "failpoints")]
        return FailAt {
            step: self
                .step
                .and_then(|f| f.checked_sub(done))
                .filter(|&f| f < n),
        };
        #[cfg(not(feature = "failpoints"))]
        {
            let _ = (done, n);
            self
        }
    }

    /// `Err(Error::Injected)` naming `object` and `step` when the operation fails before its
    /// step `i`.
    pub(crate) fn check(self, i: usize, object: &str, step: &str) -> crate::Result<()> {
        #[cfg(feature = "failpoints")]
        if self.hits(i) {
            return Err(crate::Error::Injected {
                object: object.to_string(),
                step: step.to_string(),
            });
        }
        let _ = (i, object, step);
        Ok(())
    }
}
