//! Reading a backup back: the manifest first (it alone says a backup is finished, and opening
//! it proves the key), then the data, every byte authenticated and every file hashed.
//! `verify` stops there; `restore` writes the files into a scratch directory as they are
//! checked and uses them only when all of them passed.

use std::fs::File;
use std::path::Path;

use super::crypt::{BackupKey, KeySource, OpenReader, Role, read_header};
use super::location::{self, Bucket, DATA, Location, MANIFEST, S3Settings};
use super::manifest::Manifest;
use super::pack;
use crate::error::{Error, Result};
use crate::home::WorkDir;

/// A backup whose manifest opened under the key.
pub struct Opened {
    pub manifest: Manifest,
    key: BackupKey,
    data: DataSource,
}

enum DataSource {
    File(std::path::PathBuf),
    /// Downloaded from a bucket into a scratch directory, removed with it.
    Downloaded {
        _work: WorkDir,
        path: std::path::PathBuf,
    },
}

/// Opens the manifest at `from` with the key from `source`. `scratch` is where an S3 data file
/// is downloaded to.
pub async fn open(
    from: &Location,
    source: &KeySource,
    s3: &S3Settings,
    scratch: &Path,
) -> Result<Opened> {
    let (sealed, bucket) = match from {
        Location::Dir(dir) => {
            if !dir.is_dir() {
                return Err(Error::BadRequest(format!(
                    "backup: {} is not a directory",
                    dir.display()
                )));
            }
            (location::read_small(&dir.join(MANIFEST))?, None)
        }
        Location::S3 { bucket, prefix } => {
            let b = Bucket::connect(bucket, prefix, s3)?;
            (b.get_small(MANIFEST).await?, Some(b))
        }
    };
    let mut reader = sealed.as_slice();
    let header = read_header(&mut reader)?;
    let key = tokio::task::block_in_place(|| BackupKey::derive_for(source, &header))?;
    let mut plain = Vec::new();
    {
        use std::io::Read;
        OpenReader::new(&key, Role::Manifest, header, reader)?
            .read_to_end(&mut plain)
            .map_err(|e| Error::BadRequest(format!("backup: manifest: {e}")).because(e))?;
    }
    let manifest = Manifest::from_json(&plain)?;
    let data = match (from, bucket) {
        (Location::Dir(dir), _) => DataSource::File(dir.join(DATA)),
        (_, Some(b)) => {
            let work = WorkDir::create(scratch, ".maestra-download-")?;
            let local = work.path().join(DATA);
            b.download(DATA, &local).await?;
            DataSource::Downloaded {
                _work: work,
                path: local,
            }
        }
        (_, None) => return Err(Error::Store("backup: no bucket".into())),
    };
    Ok(Opened {
        manifest,
        key,
        data,
    })
}

impl Opened {
    /// Authenticates and hashes everything; with `dest`, writes the files under it.
    pub async fn check(&self, dest: Option<&Path>) -> Result<()> {
        let path = match &self.data {
            DataSource::File(p) | DataSource::Downloaded { path: p, .. } => p.clone(),
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(location::not_found(DATA));
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        tokio::task::block_in_place(|| pack::unpack(&self.key, &self.manifest, reader, dest))
    }
}
