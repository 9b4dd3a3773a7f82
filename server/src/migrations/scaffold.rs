//! Scaffolding new migration files (`db-migrate`): the next version, from templates or
//! generated SQL, each file written whole and linked into place.

use std::path::{Path, PathBuf};

use super::MigrationError;
use super::files::MigrationSet;
use super::naming::is_snake_case;

/// The longest migration name `db-migrate` accepts.
const MAX_NAME_LEN: usize = 100;

/// Creates the next migration pair in `dir` from a template; returns (up, down) paths.
///
/// Rejects names that are not `snake_case` and names already used by a migration.
/// With `body`, the files hold that up and down SQL (autogenerate) instead of a template.
pub fn scaffold(
    dir: &Path,
    name: &str,
    body: Option<(&str, &str)>,
) -> Result<(PathBuf, PathBuf), MigrationError> {
    let version = next_version(dir, name)?;
    let id = format!("V{version}__{name}");
    let (up_text, down_text) = match body {
        Some((up_sql, down_sql)) => (
            format!("-- {id}: {up_sql}"),
            format!("-- Reverts {id}: {down_sql}"),
        ),
        None => (
            format!(
                "-- {id}: describe the change here.\n\
                 -- Runs in one transaction with its history row; keep it valid on SQLite and PostgreSQL.\n"
            ),
            format!(
                "-- Reverts {id}: undo exactly what {id}.sql does, in reverse order.\n\
                 -- `cargo xtask db-check` verifies that up, down, up gives back the same schema.\n"
            ),
        ),
    };
    let up = dir.join(format!("{id}.sql"));
    let down = dir.join(format!("{id}.down.sql"));
    write_new(dir, &[(&up, &up_text), (&down, &down_text)])?;
    Ok((up, down))
}

/// Creates the next migration in `dir` as one variant per engine, from templates: the
/// up scripts (`.sqlite.sql`, `.postgres.sql`), then their down scripts.
pub fn scaffold_variants(dir: &Path, name: &str) -> Result<Vec<PathBuf>, MigrationError> {
    let version = next_version(dir, name)?;
    let id = format!("V{version}__{name}");
    let mut files = Vec::new();
    for (engine, label, other) in [
        ("sqlite", "SQLite", "postgres"),
        ("postgres", "PostgreSQL", "sqlite"),
    ] {
        files.push((
            dir.join(format!("{id}.{engine}.sql")),
            format!(
                "-- {id} on {label}: describe the change here.\n\
                 -- Only {label} runs this file; {id}.{other}.sql is the same change for the other engine.\n\
                 -- Runs in one transaction with its history row.\n"
            ),
        ));
    }
    for (engine, label) in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")] {
        files.push((
            dir.join(format!("{id}.{engine}.down.sql")),
            format!(
                "-- Reverts {id} on {label}: undo exactly what {id}.{engine}.sql does, in reverse order.\n\
                 -- `cargo xtask db-check` verifies that up, down, up gives back the same schema.\n"
            ),
        ));
    }
    let pairs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_path(), text.as_str()))
        .collect();
    write_new(dir, &pairs)?;
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// The version the next migration named `name` in `dir` gets; creates `dir` if missing.
fn next_version(dir: &Path, name: &str) -> Result<i32, MigrationError> {
    check_new_name(dir, name)?;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| MigrationError::Files(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(highest_version_on_disk(dir)? + 1)
}

/// Writes new files in `dir`, in order, none over an existing file: each whole in a
/// hidden temporary file, synced, then linked into place, so that a kill or a full disk
/// never leaves a partial script (the temporary files of a killed run are swept here).
/// Up scripts come first: killed in between, a migration without its down script is left
/// (a warning), never a down script without its migration. On an error, the files
/// linked so far are removed.
fn write_new(dir: &Path, files: &[(&Path, &str)]) -> Result<(), MigrationError> {
    crate::durable::sweep(dir, ".V", &[crate::durable::PARTIAL]);
    let cannot = |path: &Path, e: std::io::Error| {
        MigrationError::Files(format!("cannot create {}: {e}", path.display()))
    };
    let mut temps = Vec::new();
    for (path, text) in files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut temp = crate::durable::temp_with_mode(dir, &name, crate::durable::PARTIAL, 0o666)
            .map_err(|e| cannot(path, e))?;
        std::io::Write::write_all(&mut temp, text.as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| cannot(path, e))?;
        temps.push(temp);
    }
    for (i, ((path, _), temp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = std::fs::hard_link(temp.path(), path) {
            for (linked, _) in &files[..i] {
                let _ = std::fs::remove_file(linked);
            }
            return Err(cannot(path, e));
        }
    }
    crate::durable::sync_dir(dir);
    Ok(())
}

/// Whether `name` can name the next migration in `dir`: snake_case, short enough, and
/// not taken (`dir` may not exist yet).
pub fn check_new_name(dir: &Path, name: &str) -> Result<(), MigrationError> {
    if !is_snake_case(name) {
        return Err(MigrationError::Files(format!(
            "migration name `{name}` is not snake_case (lowercase letters, digits and single underscores, starting with a letter), e.g. `add_users`"
        )));
    }
    // File names are at most 255 bytes: `V<n>__<name>.down.sql` must fit with room to spare.
    if name.len() > MAX_NAME_LEN {
        return Err(MigrationError::Files(format!(
            "migration name is {} characters long; at most {MAX_NAME_LEN}",
            name.len()
        )));
    }
    let set = match dir.is_dir() {
        true => MigrationSet::from_dir(dir)?,
        false => MigrationSet::default(),
    };
    // A new migration after a broken set would only add to it (a gap grows wider).
    set.ensure_valid()?;
    if let Some(existing) = set.migrations().iter().find(|m| m.name == name) {
        return Err(MigrationError::Files(format!(
            "a migration named `{name}` already exists: {}; choose another name",
            existing.up_file
        )));
    }
    Ok(())
}

/// The highest version of any file in `dir` that looks like a migration, valid or not.
fn highest_version_on_disk(dir: &Path) -> Result<i32, MigrationError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MigrationError::Files(format!("cannot read {}: {e}", dir.display())))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let digits: String = name
                .strip_prefix('V')?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<i32>().ok()
        })
        .max()
        .unwrap_or(0))
}
