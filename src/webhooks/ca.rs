//! A webhook's own CA file (`ca_file_path`): read with care, since the path comes from whoever
//! may edit webhooks. It must be a regular file of at most `MAX_BYTES` (no FIFOs, devices or
//! huge files), under the configured directory when one is set, and hold PEM certificates.
//! Every failure gives one message, so the answer tells nothing about which files exist.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest CA file read.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The one message for a CA file that cannot be used.
pub fn unusable(dir: Option<&Path>) -> String {
    match dir {
        Some(d) => format!(
            "The CA file cannot be used: give the path of a readable PEM certificate file of at most 1 MiB under {}.",
            d.display()
        ),
        None => "The CA file cannot be used: give the path of a readable PEM certificate file of at most 1 MiB.".into(),
    }
}

/// The certificates in the file at `path`. Blocks on the file system: call it off the async
/// threads.
pub fn read(path: &str, dir: Option<&Path>) -> Result<Vec<reqwest::Certificate>, String> {
    read_checked(path, dir).map_err(|why| {
        tracing::debug!(path, why, "CA file refused");
        unusable(dir)
    })
}

fn read_checked(path: &str, dir: Option<&Path>) -> Result<Vec<reqwest::Certificate>, &'static str> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    if let Some(dir) = dir {
        let real = path.canonicalize().map_err(|_| "cannot resolve")?;
        let root = dir.canonicalize().map_err(|_| "cannot resolve the CA directory")?;
        if !real.starts_with(&root) {
            return Err("outside the CA directory");
        }
    }
    let meta = std::fs::metadata(path).map_err(|_| "cannot stat")?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return Err("not a regular file of at most 1 MiB");
    }
    // Non-blocking, so a file swapped for a FIFO after the check cannot stall the reader.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|_| "cannot open")?;
    if !file.metadata().map_err(|_| "cannot stat")?.is_file() {
        return Err("not a regular file");
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| "cannot read")?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err("too large");
    }
    if !bytes.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err("no PEM certificate");
    }
    match reqwest::Certificate::from_pem_bundle(&bytes) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err("not a valid PEM certificate file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_pem_files_under_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let generic = unusable(None);
        for path in ["/dev/zero", "/etc/hostname", "relative.pem", "/nonexistent/ca.pem"] {
            assert_eq!(read(path, None).unwrap_err(), generic, "{path}");
        }
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; (MAX_BYTES + 1) as usize]).unwrap();
        assert_eq!(read(big.to_str().unwrap(), None).unwrap_err(), generic);
        let other = tempfile::tempdir().unwrap();
        let outside = other.path().join("x.pem");
        std::fs::write(&outside, "x").unwrap();
        assert_eq!(
            read(outside.to_str().unwrap(), Some(dir.path())).unwrap_err(),
            unusable(Some(dir.path()))
        );
    }
}
