//! Dead properties (PROPPATCH) stored with the file itself, in one extended attribute
//! ([`XATTR`], JSON): they follow the file through MOVE (rename), are copied by COPY and
//! vanish with it. Live properties (size, dates, etag, locks, quota) come from dav-server.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use dav_server::fs::DavProp;
use http::StatusCode;
use rustix::fs::XattrFlags;
use serde::{Deserialize, Serialize};

/// Name of the attribute holding a file's dead properties.
pub const XATTR: &str = "user.sandbar.davprops";
/// Largest attribute value Linux accepts.
const MAX_VALUE: usize = 65536;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    name: String,
    prefix: Option<String>,
    namespace: Option<String>,
    xml: Option<String>,
}

impl Stored {
    fn from_prop(prop: DavProp) -> io::Result<Self> {
        let xml = prop
            .xml
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(Self {
            name: prop.name,
            prefix: prop.prefix,
            namespace: prop.namespace,
            xml,
        })
    }

    fn to_prop(&self, with_value: bool) -> DavProp {
        DavProp {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            namespace: self.namespace.clone(),
            xml: if with_value {
                self.xml.clone().map(String::into_bytes)
            } else {
                None
            },
        }
    }

    fn same_key(&self, prop: &DavProp) -> bool {
        self.name == prop.name && self.namespace == prop.namespace
    }
}

/// `/proc/self/fd/<n>`: a path naming exactly the file `fd` holds (for the path-based xattr
/// calls, which also work on `O_PATH` descriptors this way).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn decode(value: &[u8]) -> io::Result<Vec<Stored>> {
    serde_json::from_slice(value).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

fn load(path: &Path) -> io::Result<Vec<Stored>> {
    let mut buf = vec![0u8; MAX_VALUE];
    match rustix::fs::getxattr(path, XATTR, &mut buf) {
        Ok(n) => decode(&buf[..n]),
        Err(rustix::io::Errno::NODATA) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn save(path: &Path, props: &[Stored]) -> io::Result<()> {
    if props.is_empty() {
        return match rustix::fs::removexattr(path, XATTR) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let value = serde_json::to_vec(props).map_err(io::Error::other)?;
    Ok(rustix::fs::setxattr(
        path,
        XATTR,
        &value,
        XattrFlags::empty(),
    )?)
}

/// Applies `(set, property)` changes in order; every change succeeds or none is stored.
pub fn patch(path: &Path, patch: Vec<(bool, DavProp)>) -> io::Result<Vec<(StatusCode, DavProp)>> {
    let mut props = load(path)?;
    let mut result = Vec::with_capacity(patch.len());
    for (set, prop) in patch {
        props.retain(|p| !p.same_key(&prop));
        let stored = Stored::from_prop(prop)?;
        result.push((StatusCode::OK, stored.to_prop(false)));
        if set {
            props.push(stored);
        }
    }
    save(path, &props)?;
    Ok(result)
}

/// Every dead property (values included when `with_values`).
pub fn list(path: &Path, with_values: bool) -> io::Result<Vec<DavProp>> {
    Ok(load(path)?.iter().map(|p| p.to_prop(with_values)).collect())
}

/// The XML of one property, if set.
pub fn get(path: &Path, prop: &DavProp) -> io::Result<Option<Vec<u8>>> {
    Ok(load(path)?
        .into_iter()
        .find(|p| p.same_key(prop))
        .and_then(|p| p.xml.map(String::into_bytes)))
}

/// Copies the dead properties of `source` to `dest` (both open files).
pub fn copy(source: &File, dest: &File) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_VALUE];
    match rustix::fs::fgetxattr(source, XATTR, &mut buf) {
        Ok(n) => Ok(rustix::fs::fsetxattr(
            dest,
            XATTR,
            &buf[..n],
            XattrFlags::empty(),
        )?),
        Err(rustix::io::Errno::NODATA) => match rustix::fs::fremovexattr(dest, XATTR) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}
