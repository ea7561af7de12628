//! A generated migration written aside, then moved into place whole ([`Staged`]).

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

/// A migration written, with the recorded schema that follows it, into a staging folder
/// inside its folder of migrations (`<folder>/.generate-<random>/`), to be moved into place by
/// [`commit`](Self::commit). Dropped before it is committed, or after it is undone, it removes
/// what it wrote: the staging folder, and the folder of migrations if it was made for it (and
/// is empty again).
#[derive(Debug)]
pub(crate) struct Staged {
    /// The folder of migrations.
    folder: PathBuf,
    /// Whether `folder` was made for this migration.
    made_folder: bool,
    /// `<folder>/.generate-<random>`: `<version>_<name>/`, `schema.json`, and
    /// `schema.json.previous` when the folder had one.
    staging: PathBuf,
    /// `<version>_<name>`.
    name: String,
    /// Whether the folder had a `schema.json` before.
    had_schema: bool,
    /// Whether the migration and its schema are in place.
    committed: bool,
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
    /// `schema` as the folder's next `schema.json`, into a staging folder inside `folder`
    /// (made if needed). Nothing of it is in place yet.
    pub(super) fn write(
        folder: &Path,
        name: String,
        files: &[(&str, &str)],
        schema: &str,
    ) -> Result<Self> {
        let made_folder = !folder.is_dir();
        fs::create_dir_all(folder).map_err(io(folder))?;
        let staging = folder.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        if let Err(e) = fs::create_dir(&staging).map_err(io(&staging)) {
            if made_folder {
                let _ = fs::remove_dir(folder);
            }
            return Err(e);
        }
        // From here on, dropping it removes what was written.
        let staged = Self {
            folder: folder.to_owned(),
            made_folder,
            staging,
            name,
            had_schema: false,
            committed: false,
        };
        staged.fill(files, schema)
    }

    fn fill(mut self, files: &[(&str, &str)], schema: &str) -> Result<Self> {
        let migration = self.staging.join(&self.name);
        fs::create_dir(&migration).map_err(io(&migration))?;
        for (file, text) in files {
            write_synced(&migration.join(file), text)?;
        }
        sync_dir(&migration)?;
        write_synced(&self.staging.join(RECORDED_SCHEMA), schema)?;
        let recorded = self.folder.join(RECORDED_SCHEMA);
        let previous = self.staging.join(PREVIOUS_SCHEMA);
        match fs::copy(&recorded, &previous) {
            Ok(_) => self.had_schema = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io(&recorded)(source)),
        }
        Ok(self)
    }

    /// Where the migration is once committed: `<folder>/<version>_<name>`.
    pub(crate) fn dir(&self) -> PathBuf {
        self.folder.join(&self.name)
    }

    /// Moves the migration into place, then the recorded schema over the folder's (each a
    /// rename within the folder, made durable before the next step). If the second move fails,
    /// the first is undone: the folder is left as it was.
    pub(crate) fn commit(&mut self) -> Result<()> {
        let staged = self.staging.join(&self.name);
        let dir = self.dir();
        fs::rename(&staged, &dir).map_err(io(&dir))?;
        // The migration is on the disk before `schema.json` records it: a crash between the
        // two never leaves a `schema.json` whose migration is lost.
        let recorded = self.folder.join(RECORDED_SCHEMA);
        let recorded_too = sync_dir(&self.folder).and_then(|()| {
            fs::rename(self.staging.join(RECORDED_SCHEMA), &recorded).map_err(io(&recorded))
        });
        if let Err(e) = recorded_too {
            if fs::rename(&dir, &staged).is_err() {
                let _ = fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
        self.committed = true;
        sync_dir(&self.folder)?;
        if self.made_folder {
            sync_dir(parent(&self.folder))?;
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
    #[cfg(feature = "cli")]
    pub(crate) fn undo(&mut self) -> Result<()> {
        if !self.committed {
            return Ok(());
        }
        let recorded = self.folder.join(RECORDED_SCHEMA);
        let mut steps = vec![
            (recorded.clone(), self.staging.join(RECORDED_SCHEMA)),
            (self.dir(), self.staging.join(&self.name)),
        ];
        if self.had_schema {
            steps.push((self.staging.join(PREVIOUS_SCHEMA), recorded));
        }
        for (taken, (from, to)) in steps.iter().enumerate() {
            let step = fs::rename(from, to).map_err(io(from));
            if let Err(e) = step.and_then(|()| sync_dir(&self.folder)) {
                // Those taken back, the failed one too if its rename took place.
                for (from, to) in steps[..=taken].iter().rev() {
                    if !from.exists() && to.exists() {
                        let _ = fs::rename(to, from);
                    }
                }
                let _ = sync_dir(&self.folder);
                return Err(e);
            }
        }
        self.committed = false;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Best effort: a staging folder left behind is hidden, and nothing reads it.
        let _ = fs::remove_dir_all(&self.staging);
        if self.made_folder && !self.committed {
            let _ = fs::remove_dir(&self.folder);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::Staged;

    thread_local! {
        /// The folders `sync_dir` flushed on this thread, in order.
        pub(super) static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    fn synced() -> Vec<PathBuf> {
        SYNCED.with(|synced| synced.take())
    }

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
            folder,
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
                    fs::create_dir_all(staged.staging.join(&staged.name).join("in_the_way"))
                        .unwrap()
                }
                _ => fs::remove_file(staged.staging.join(super::PREVIOUS_SCHEMA)).unwrap(),
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
        let migration = staged.staging.join(&staged.name);
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
}
