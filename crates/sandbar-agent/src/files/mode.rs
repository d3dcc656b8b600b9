//! File modes and times rendered the way the Go daemon renders them.

use chrono::{DateTime, Utc};

use super::FilesError;

/// Go's `os.FileMode.String()` for a Unix `st_mode`: type and special-bit letters (in Go's
/// order `dalTLDpSugct?`), or `-`, followed by `rwxrwxrwx`.
pub fn go_file_mode(st_mode: u32) -> String {
    let kind = st_mode & libc::S_IFMT;
    let mut out = String::with_capacity(12);
    if kind == libc::S_IFDIR {
        out.push('d');
    }
    if kind == libc::S_IFLNK {
        out.push('L');
    }
    if kind == libc::S_IFBLK || kind == libc::S_IFCHR {
        out.push('D');
    }
    if kind == libc::S_IFIFO {
        out.push('p');
    }
    if kind == libc::S_IFSOCK {
        out.push('S');
    }
    if st_mode & libc::S_ISUID != 0 {
        out.push('u');
    }
    if st_mode & libc::S_ISGID != 0 {
        out.push('g');
    }
    if kind == libc::S_IFCHR {
        out.push('c');
    }
    if st_mode & libc::S_ISVTX != 0 {
        out.push('t');
    }
    if out.is_empty() {
        out.push('-');
    }
    const RWX: &[u8; 9] = b"rwxrwxrwx";
    for (i, letter) in RWX.iter().enumerate() {
        let bit = 1 << (8 - i);
        out.push(if st_mode & bit != 0 {
            char::from(*letter)
        } else {
            '-'
        });
    }
    out
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction
/// without trailing zeros, omitted when zero).
pub fn go_time_string(time: &DateTime<Utc>) -> String {
    let mut out = time.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = time.timestamp_subsec_nanos();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Parses permission bits given in octal (`755`, `0644`, `0o700`).
pub fn parse_octal(raw: &str) -> Result<u32, FilesError> {
    let digits = raw.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(FilesError::InvalidMode(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_go_file_modes() {
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o1777), "dtrwxrwxrwx");
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(go_file_mode(libc::S_IFCHR | 0o666), "Dcrw-rw-rw-");
        assert_eq!(go_file_mode(libc::S_IFREG | 0o4755), "urwxr-xr-x");
        assert_eq!(go_file_mode(libc::S_IFIFO | 0o600), "prw-------");
    }

    #[test]
    fn renders_go_times() {
        let t = DateTime::from_timestamp(1_735_689_600, 120_000_000).unwrap();
        assert_eq!(go_time_string(&t), "2025-01-01 00:00:00.12 +0000 UTC");
        let t = DateTime::from_timestamp(1_735_689_600, 0).unwrap();
        assert_eq!(go_time_string(&t), "2025-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn parses_octal_modes() {
        assert_eq!(parse_octal("755").unwrap(), 0o755);
        assert_eq!(parse_octal("0644").unwrap(), 0o644);
        assert!(parse_octal("999").is_err());
        assert!(parse_octal("rwx").is_err());
    }
}
