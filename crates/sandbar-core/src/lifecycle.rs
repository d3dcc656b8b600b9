//! Which lifecycle action may run from which state, and through which states it passes.

use crate::state::SandboxState;

/// A user (or policy) request that changes a sandbox's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Archive,
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Archive => "archive",
            Self::Destroy => "destroy",
        }
    }
}

/// What to do for an action in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The sandbox already is where the action leads.
    Nothing,
    /// Record `through`, do the work, then record `target`.
    Transition {
        through: SandboxState,
        target: SandboxState,
    },
}

/// Decides what `action` does from `state`.
///
/// Start works from `stopped`, `archived` and `error` (a recovered sandbox starts over its
/// kept writable layer). Stop works from `started` and `error` (the latter cleans up whatever
/// is left). Archive needs a stopped sandbox and packs its writable layer into a compressed
/// file (`archiving`); starting an archived sandbox restores it first (`restoring`). Destroy works from every state. Transitional states only
/// exist while an operation holds the sandbox, so meeting one means another operation is
/// under way.
pub fn plan(state: SandboxState, action: Action) -> Result<Plan, LifecycleError> {
    use SandboxState as S;
    if state.is_transitional() {
        return Err(LifecycleError::Busy { state, action });
    }
    let transition = |through, target| Ok(Plan::Transition { through, target });
    match (action, state) {
        (Action::Destroy, _) => transition(S::Destroying, S::Destroyed),
        (Action::Start, S::Started) => Ok(Plan::Nothing),
        (Action::Start, S::Stopped | S::Error) => transition(S::Starting, S::Started),
        (Action::Start, S::Archived) => transition(S::Restoring, S::Started),
        (Action::Stop, S::Stopped | S::Archived) => Ok(Plan::Nothing),
        (Action::Stop, S::Started | S::Error) => transition(S::Stopping, S::Stopped),
        (Action::Archive, S::Archived) => Ok(Plan::Nothing),
        (Action::Archive, S::Stopped) => transition(S::Archiving, S::Archived),
        (Action::Start | Action::Stop | Action::Archive, _) => {
            Err(LifecycleError::NotAllowed { state, action })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("sandbox is {state}: another operation is in progress, cannot {}", action.as_str())]
    Busy { state: SandboxState, action: Action },
    #[error("cannot {} a sandbox that is {state}", action.as_str())]
    NotAllowed { state: SandboxState, action: Action },
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxState as S;

    #[test]
    fn start_stop_destroy_rules() {
        assert_eq!(plan(S::Started, Action::Start), Ok(Plan::Nothing));
        assert_eq!(
            plan(S::Stopped, Action::Start),
            Ok(Plan::Transition {
                through: S::Starting,
                target: S::Started
            })
        );
        assert_eq!(
            plan(S::Error, Action::Start),
            Ok(Plan::Transition {
                through: S::Starting,
                target: S::Started
            })
        );
        assert_eq!(plan(S::Stopped, Action::Stop), Ok(Plan::Nothing));
        assert_eq!(
            plan(S::Started, Action::Stop),
            Ok(Plan::Transition {
                through: S::Stopping,
                target: S::Stopped
            })
        );
        assert_eq!(
            plan(S::Archived, Action::Start),
            Ok(Plan::Transition {
                through: S::Restoring,
                target: S::Started
            })
        );
        assert_eq!(
            plan(S::Stopped, Action::Archive),
            Ok(Plan::Transition {
                through: S::Archiving,
                target: S::Archived
            })
        );
        assert!(matches!(
            plan(S::Archiving, Action::Start),
            Err(LifecycleError::Busy { .. })
        ));
        assert!(matches!(
            plan(S::Started, Action::Archive),
            Err(LifecycleError::NotAllowed { .. })
        ));
        assert!(matches!(
            plan(S::Creating, Action::Stop),
            Err(LifecycleError::Busy { .. })
        ));
        assert!(matches!(
            plan(S::Stopping, Action::Destroy),
            Err(LifecycleError::Busy { .. })
        ));
        for state in [S::Started, S::Stopped, S::Error, S::Archived] {
            assert_eq!(
                plan(state, Action::Destroy),
                Ok(Plan::Transition {
                    through: S::Destroying,
                    target: S::Destroyed
                })
            );
        }
    }
}
