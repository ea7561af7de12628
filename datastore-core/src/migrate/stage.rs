//! A generated migration written aside, then moved into place whole ([`Staged`]), in a folder
//! of migrations one generation writes to at a time ([`Held`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::RECORDED_SCHEMA;
use crate::{Error, Result};

/// How the name of a staging folder starts. The leading `.` hides it from Diesel (and so from
/// `embed_migrations!` and the diesel CLI), which skip such entries, and from `generate`,
/// which skips them too as it picks the next version and counts the migrations.
const STAGING_PREFIX: &str = ".generate-";

/// The copy of the folder's `schema.json` kept in the staging folder, put back by `undo`.
const PREVIOUS_SCHEMA: &str = "schema.json.previous";

/// A folder of migrations held by one generation (`generate`, `baseline`) at a time: another
/// one, in this process or another, waits until it is dropped (on unix, where the folder is
/// locked with `flock`, which a killed process releases too). Made if it was missing, it is
/// removed again when dropped if it is empty again.
///
/// Holding it, no generation is writing a staging folder in it: those there were left by a
/// generation that was killed (nothing reads them), and taking it removes them.
#[derive(Debug)]
pub(crate) struct Held {
    dir: PathBuf,
    /// Whether `dir` was made for this generation.
    made: bool,
    _lock: Lock,
}

#[cfg(unix)]
type Lock = fs::File;
#[cfg(not(unix))]
type Lock = ();

/// Waits for, and takes, the lock of the folder `dir` (none but on unix).
fn lock(dir: &Path) -> std::io::Result<Lock> {
    #[cfg(unix)]
    {
        let dir = fs::File::open(dir)?;
        loop {
            match rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive) {
                Err(rustix::io::Errno::INTR) => continue,
                locked => return Ok(locked.map(|()| dir)?),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether the folder `lock` holds is still the one at `dir`: one a generation made and then
/// removed again (it wrote nothing) while another waited for it is gone, and may be made anew
/// by a third, which a lock of the old one does not hold off.
fn still_there(lock: &Lock, dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(held), Ok(now)) = (lock.metadata(), fs::metadata(dir)) else {
            return false;
        };
        (held.dev(), held.ino()) == (now.dev(), now.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (lock, dir);
        true
    }
}

impl Held {
    /// The folder `dir`, made if needed, once no other generation holds it; the staging
    /// folders killed generations left in it are removed.
    pub(super) fn take(dir: &Path) -> Result<Self> {
        loop {
            let made = !dir.is_dir();
            fs::create_dir_all(dir).map_err(io(dir))?;
            let lock = lock(dir).map_err(io(dir))?;
            if !still_there(&lock, dir) {
                continue;
            }
            let held = Self {
                dir: dir.to_owned(),
                made,
                _lock: lock,
            };
            held.remove_left_staging();
            return Ok(held);
        }
    }

    /// Removes the staging folders in the folder: only entries named exactly as
    /// [`Staging::make`] names them (`.generate-` and 32 lowercase hex digits). Where the folder
    /// is not locked (not on unix), another generation may be writing one, and none is removed.
    /// Best effort: one left is hidden, and nothing reads it.
    fn remove_left_staging(&self) {
        if cfg!(not(unix)) {
            return;
        }
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let staging = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX));
            let is_staging = staging.is_some_and(|id| {
                id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
            // The entry's own type: a link named so is not followed.
            if is_staging && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Held {
    /// Writes `schema` as the folder's `schema.json` (which it has none of), as a migration's:
    /// written aside and flushed, then renamed into place, durably; its path.
    pub(super) fn record(&self, schema: &str) -> Result<PathBuf> {
        let staging = Staging::make(self)?;
        let staged = staging.0.join(RECORDED_SCHEMA);
        write_synced(&staged, schema)?;
        let recorded = self.dir.join(RECORDED_SCHEMA);
        fs::rename(&staged, &recorded).map_err(io(&recorded))?;
        sync_dir(&self.dir)?;
        Ok(recorded)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.made {
            // Fails, keeping it, unless it is empty.
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// A staging folder, `<folder>/.generate-<32 hex digits>`, removed with what it holds when
/// dropped.
#[derive(Debug)]
struct Staging(PathBuf);

impl Staging {
    fn make(folder: &Held) -> Result<Self> {
        let dir = folder
            .dir
            .join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: a staging folder left behind is hidden, nothing reads it, and the next
        // generation removes it.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A migration written, with the recorded schema that follows it, into a staging folder
/// inside its folder of migrations (`<folder>/.generate-<random>/`), to be moved into place by
/// [`commit`](Self::commit). Dropped before it is committed, or after it is undone, it removes
/// what it wrote: the staging folder, and the folder of migrations if it was made for it (and
/// is empty again). It holds the folder until dropped.
#[derive(Debug)]
pub(crate) struct Staged {
    /// `<folder>/.generate-<random>`: `<version>_<name>/`, `schema.json`, and
    /// `schema.json.previous` when the folder had one. Dropped before `folder`.
    staging: Staging,
    /// `<version>_<name>`.
    name: String,
    /// Whether the folder had a `schema.json` before.
    had_schema: bool,
    /// Whether the migration and its schema are in place.
    committed: bool,
    /// The folder of migrations.
    folder: Held,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.display().to_string();
    move |source| Error::Io { path, source }
}

/// Writes `text` to a new file at `path`, flushed to the disk: a full disk fails here, not
/// after the file was moved into place.
fn write_synced(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::File::create(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Flushes the entries of the folder `dir` to the disk: a file created in it, or renamed into
/// or out of it, is there after a crash only once its folder is synced (on Linux, a rename is
/// otherwise lost with the machine). Where a folder cannot be opened as a file (not on unix),
/// it does nothing.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(test)]
    tests::SYNCED.with(|synced| synced.borrow_mut().push(dir.to_owned()));
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// The folder `path` is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

impl Staged {
    /// Writes `files` (each a name and its text) as the migration `<folder>/<name>`, and
    /// `schema` as the folder's next `schema.json`, into a staging folder inside `folder`.
    /// Nothing of it is in place yet.
    pub(super) fn write(
        folder: Held,
        name: String,
        files: &[(&str, &str)],
        schema: &str,
    ) -> Result<Self> {
        // From here on, dropping it removes what was written.
        let mut staged = Self {
            staging: Staging::make(&folder)?,
            name,
            had_schema: false,
            committed: false,
            folder,
        };
        let migration = staged.staging.0.join(&staged.name);
        fs::create_dir(&migration).map_err(io(&migration))?;
        for (file, text) in files {
            write_synced(&migration.join(file), text)?;
        }
        sync_dir(&migration)?;
        write_synced(&staged.staging.0.join(RECORDED_SCHEMA), schema)?;
        let recorded = staged.folder.dir.join(RECORDED_SCHEMA);
        match fs::copy(&recorded, staged.staging.0.join(PREVIOUS_SCHEMA)) {
            Ok(_) => staged.had_schema = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io(&recorded)(source)),
        }
        Ok(staged)
    }

    /// Where the migration is once committed: `<folder>/<version>_<name>`.
    pub(crate) fn dir(&self) -> PathBuf {
        self.folder.dir.join(&self.name)
    }

    /// Moves the migration into place, then the recorded schema over the folder's (each a
    /// rename within the folder, made durable before the next step). If the second move fails,
    /// the first is undone, and if the last step, making the second durable, fails, both are
    /// ([`undo`](Self::undo)): the folder is left as it was, so that a caller putting several
    /// migrations in place puts all or none (an undo that fails too leaves this one in place,
    /// committed, and says so in the error it returns).
    pub(crate) fn commit(&mut self) -> Result<()> {
        let staged = self.staging.0.join(&self.name);
        let dir = self.dir();
        fs::rename(&staged, &dir).map_err(io(&dir))?;
        // The migration is on the disk before `schema.json` records it: a crash between the
        // two never leaves a `schema.json` whose migration is lost.
        let recorded = self.folder.dir.join(RECORDED_SCHEMA);
        let recorded_too = sync_dir(&self.folder.dir).and_then(|()| {
            fs::rename(self.staging.0.join(RECORDED_SCHEMA), &recorded).map_err(io(&recorded))
        });
        if let Err(e) = recorded_too {
            if fs::rename(&dir, &staged).is_err() {
                let _ = fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
        self.committed = true;
        let durable = sync_dir(&self.folder.dir).and_then(|()| match self.folder.made {
            true => sync_dir(parent(&self.folder.dir)),
            false => Ok(()),
        });
        if let Err(e) = durable {
            return Err(match self.undo() {
                Ok(()) => e,
                Err(undo) => undo,
            });
        }
        Ok(())
    }

    /// Takes a committed migration out of place again: the recorded schema out, the
    /// migration's folder out, then the folder's previous `schema.json` back (if it had one).
    /// If a step fails, those taken are undone: the migration stays committed, as
    /// `schema.json` records it. Killed partway, it leaves the folder without `schema.json`,
    /// which `generate` and `check` refuse ([`MigrationFailure::SchemaFileMissing`]), never a
    /// `schema.json` that disagrees with the migrations (the previous one beside the
    /// migration, from which `generate` would write its change a second time; or the new one
    /// without it, from which `generate` would never write it).
    ///
    /// [`MigrationFailure::SchemaFileMissing`]: super::MigrationFailure::SchemaFileMissing
    pub(crate) fn undo(&mut self) -> Result<()> {
        if !self.committed {
            return Ok(());
        }
        let recorded = self.folder.dir.join(RECORDED_SCHEMA);
        let staging = &self.staging.0;
        let mut steps = vec![
            (recorded.clone(), staging.join(RECORDED_SCHEMA)),
            (self.dir(), staging.join(&self.name)),
        ];
        if self.had_schema {
            steps.push((staging.join(PREVIOUS_SCHEMA), recorded));
        }
        for (taken, (from, to)) in steps.iter().enumerate() {
            let step = fs::rename(from, to).map_err(io(from));
            if let Err(e) = step.and_then(|()| sync_dir(&self.folder.dir)) {
                // Those taken back, the failed one too if its rename took place.
                for (from, to) in steps[..=taken].iter().rev() {
                    if !from.exists() && to.exists() {
                        let _ = fs::rename(to, from);
                    }
                }
                let _ = sync_dir(&self.folder.dir);
                return Err(e);
            }
        }
        self.committed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::{Held, Staged};

    thread_local! {
        /// The folders `sync_dir` flushed on this thread, in order.
        pub(super) static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    fn synced() -> Vec<PathBuf> {
        SYNCED.with(|synced| synced.take())
    }

    #[cfg(feature = "cli")]
    fn listing(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn stage(folder: &Path) -> Staged {
        Staged::write(
            Held::take(folder).unwrap(),
            "2026-01-02-000000_b".into(),
            &[("up.sql", "up"), ("down.sql", "down")],
            "new",
        )
        .unwrap()
    }

    /// What the command line relies on to put two backends' migrations in place or neither: a
    /// committed migration undone, or one never committed, leaves its folder as it was.
    #[cfg(feature = "cli")]
    #[test]
    fn an_undone_or_uncommitted_migration_leaves_the_folder_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("sqlite");
        fs::create_dir_all(folder.join("2026-01-01-000000_a")).unwrap();
        fs::write(folder.join("2026-01-01-000000_a/up.sql"), "a").unwrap();
        fs::write(folder.join("schema.json"), "old").unwrap();
        let before = listing(&folder);

        drop(stage(&folder));
        assert_eq!(listing(&folder), before, "dropped uncommitted");

        let mut staged = stage(&folder);
        staged.commit().unwrap();
        assert_eq!(
            fs::read_to_string(staged.dir().join("up.sql")).unwrap(),
            "up"
        );
        assert_eq!(
            fs::read_to_string(folder.join("schema.json")).unwrap(),
            "new"
        );
        staged.undo().unwrap();
        drop(staged);
        assert_eq!(listing(&folder), before, "undone");
        assert_eq!(
            fs::read_to_string(folder.join("schema.json")).unwrap(),
            "old"
        );

        // A folder made for the migration goes again with it.
        let new = tmp.path().join("postgres");
        let mut staged = stage(&new);
        staged.commit().unwrap();
        staged.undo().unwrap();
        drop(staged);
        assert!(!new.exists());
        drop(stage(&new));
        assert!(!new.exists());
    }

    /// An undo that fails partway (here taking the migration out, as a refused permission
    /// would: something is in its way in the staging folder; or putting the previous
    /// `schema.json` back, its copy gone) leaves the migration committed, its `schema.json`
    /// recording it: a folder from which the next `generate` writes nothing twice and loses
    /// nothing, never one whose `schema.json` disagrees with its migrations.
    #[cfg(feature = "cli")]
    #[test]
    fn an_undo_that_fails_partway_leaves_the_migration_committed() {
        for blocked in ["migration", "previous schema"] {
            let tmp = tempfile::tempdir().unwrap();
            let folder = tmp.path().join("sqlite");
            fs::create_dir_all(folder.join("2026-01-01-000000_a")).unwrap();
            fs::write(folder.join("2026-01-01-000000_a/up.sql"), "a").unwrap();
            fs::write(folder.join("schema.json"), "old").unwrap();
            let mut staged = stage(&folder);
            staged.commit().unwrap();

            match blocked {
                "migration" => {
                    fs::create_dir_all(staged.staging.0.join(&staged.name).join("in_the_way"))
                        .unwrap()
                }
                _ => fs::remove_file(staged.staging.0.join(super::PREVIOUS_SCHEMA)).unwrap(),
            }
            assert!(staged.undo().is_err(), "{blocked}");
            drop(staged);
            assert_eq!(
                listing(&folder),
                ["2026-01-01-000000_a", "2026-01-02-000000_b", "schema.json"],
                "{blocked}"
            );
            assert_eq!(
                fs::read_to_string(folder.join("schema.json")).unwrap(),
                "new",
                "{blocked}"
            );
        }
    }

    /// Each step of putting a migration in place is on the disk before the next: the
    /// migration's files (each synced as written) and its folder's entries before it is
    /// renamed into place, that rename before `schema.json` is renamed over the folder's, and
    /// that one before `commit` returns; undoing it, each rename before the next.
    #[test]
    fn each_rename_is_made_durable_before_the_next_step() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("sqlite");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("schema.json"), "old").unwrap();
        let mut staged = stage(&folder);
        let migration = staged.staging.0.join(&staged.name);
        assert_eq!(synced(), [migration]);
        staged.commit().unwrap();
        assert_eq!(synced(), [folder.clone(), folder.clone()]);
        #[cfg(feature = "cli")]
        {
            staged.undo().unwrap();
            assert_eq!(synced(), [folder.clone(), folder.clone(), folder.clone()]);
        }

        // A folder made for the migration is made durable in its parent too.
        let new = tmp.path().join("postgres");
        stage(&new).commit().unwrap();
        assert_eq!(synced()[1..], [new.clone(), new, tmp.path().to_owned()]);
    }

    /// A staged migration holds its folder: another generation waits for it (here the lock is
    /// tried without waiting, and refused), until it is dropped.
    #[cfg(unix)]
    #[test]
    fn a_staged_migration_holds_its_folder_until_dropped() {
        use rustix::fs::{FlockOperation, flock};

        let tmp = tempfile::tempdir().unwrap();
        let staged = stage(tmp.path());
        let other = fs::File::open(tmp.path()).unwrap();
        assert_eq!(
            flock(&other, FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK)
        );
        drop(staged);
        flock(&other, FlockOperation::NonBlockingLockExclusive).unwrap();
    }

    /// A generation that made the folder and wrote nothing removes it again as it lets go: one
    /// that waited for it meanwhile holds the folder there is then (made anew), not the one
    /// removed (whose lock would hold off no third generation, and in which nothing can be
    /// written).
    #[cfg(unix)]
    #[test]
    fn a_generation_that_waited_for_a_folder_removed_meanwhile_holds_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("postgres");
        let first = Held::take(&dir).unwrap();
        assert!(first.made);
        let waiting = std::thread::spawn({
            let dir = dir.clone();
            move || Held::take(&dir).unwrap()
        });
        // Long enough for the other to be waiting for the lock (if it is not yet, it makes
        // the folder itself, and the test passes without telling anything).
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
        let second = waiting.join().unwrap();
        assert!(dir.is_dir(), "the folder held is gone");
        assert!(super::still_there(&second._lock, &dir));
    }
}
