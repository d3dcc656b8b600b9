//! Capability bounding: the sandbox's root keeps the capabilities Docker's default profile
//! keeps, and only over its own user namespace.

use caps::{CapSet, Capability, CapsHashSet};

use crate::JailError;

const KEPT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Drops every other capability from the bounding, inheritable, permitted and effective sets.
pub fn restrict() -> Result<(), JailError> {
    let kept: CapsHashSet = KEPT.iter().copied().collect();
    for cap in caps::all() {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| JailError::Child(format!("drop {cap} from the bounding set: {e}")))?;
        }
    }
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &kept)
            .map_err(|e| JailError::Child(format!("set the {set:?} capabilities: {e}")))?;
    }
    Ok(())
}
