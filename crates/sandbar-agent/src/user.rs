//! The sandbox user, resolved from the sandbox's own `/etc/passwd` and `/etc/group`.
//!
//! Parsed by hand: the agent is a static binary and must never go through glibc NSS.

use std::path::{Path, PathBuf};

/// A resolved user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Supplementary groups (from `/etc/group` membership), primary group included.
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("user {name:?} is not in {passwd}")]
    Unknown { name: String, passwd: PathBuf },
}

/// One `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` line: `name:password:gid:member,member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .collect()
}

pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: fields[0].to_owned(),
                gid: fields[2].parse().ok()?,
                members: fields[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `name` (or a numeric uid) against `<etc>/passwd` and `<etc>/group`.
pub fn resolve(etc: &Path, name: &str) -> Result<User, UserError> {
    let passwd_path = etc.join("passwd");
    let passwd = std::fs::read_to_string(&passwd_path).map_err(|source| UserError::Read {
        path: passwd_path.clone(),
        source,
    })?;
    let entries = parse_passwd(&passwd);
    let numeric: Option<u32> = name.parse().ok();
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .or_else(|| numeric.and_then(|uid| entries.iter().find(|e| e.uid == uid)));
    let entry = match (entry, numeric) {
        (Some(entry), _) => entry.clone(),
        // A bare uid that has no account still names a valid identity.
        (None, Some(uid)) => PasswdEntry {
            name: name.to_owned(),
            uid,
            gid: uid,
            home: "/".to_owned(),
        },
        (None, None) => {
            return Err(UserError::Unknown {
                name: name.to_owned(),
                passwd: passwd_path,
            })
        }
    };
    // A missing /etc/group only loses supplementary groups.
    let groups_text = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    let mut groups = vec![entry.gid];
    for group in parse_group(&groups_text) {
        if group.members.contains(&entry.name) && !groups.contains(&group.gid) {
            groups.push(group.gid);
        }
    }
    let home = if entry.home.is_empty() {
        "/".to_owned()
    } else {
        entry.home
    };
    Ok(User {
        name: entry.name,
        uid: entry.uid,
        gid: entry.gid,
        home: PathBuf::from(home),
        groups,
    })
}

/// Looks a user name up by uid, or a group name by gid, or parses a number.
pub fn lookup_id(etc: &Path, file: &str, name: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let text = std::fs::read_to_string(etc.join(file)).ok()?;
    if file == "passwd" {
        parse_passwd(&text)
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.uid)
    } else {
        parse_group(&text)
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_skips_garbage() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nbob:x:1000:1000::/home/bob:/bin/sh\nbad:x:notanumber:1::/:/bin/sh\n";
        let entries = parse_passwd(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].name, "bob");
        assert_eq!(entries[1].uid, 1000);
        assert_eq!(entries[1].home, "/home/bob");
    }

    #[test]
    fn resolves_supplementary_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("group"),
            "root:x:0:\nbob:x:1000:\ndocker:x:999:alice,bob\nwheel:x:10:alice\n",
        )
        .unwrap();
        let bob = resolve(dir.path(), "bob").unwrap();
        assert_eq!(bob.uid, 1000);
        assert_eq!(bob.groups, vec![1000, 999]);
        assert_eq!(resolve(dir.path(), "1000").unwrap().name, "bob");
        assert!(matches!(
            resolve(dir.path(), "nobody"),
            Err(UserError::Unknown { .. })
        ));
        assert_eq!(lookup_id(dir.path(), "group", "docker"), Some(999));
        assert_eq!(lookup_id(dir.path(), "passwd", "42"), Some(42));
    }
}
