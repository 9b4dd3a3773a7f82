//! The results of one run, and their three renderings: the Markdown section of
//! `docs/benchmarks.md`, JSON, and the SVG plot of throughput against concurrency.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::app::AppPoint;
use crate::backup::BackupResult;
use crate::histories::HistoryResult;
use crate::readiness::ReadinessPoint;
use crate::writes::WriteResult;

/// Everything one run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// When it ran (UTC, RFC 3339).
    pub date: String,
    /// `--quick`: shorter runs, fewer points.
    pub quick: bool,
    /// CPUs the machine offers.
    pub cpus: usize,
    /// SQLite's version (the library linked into the server).
    pub sqlite_version: String,
    /// PostgreSQL's version, when it was reachable.
    pub postgres_version: Option<String>,
    /// Readiness per engine.
    pub readiness: Vec<Engine<ReadinessPoint>>,
    /// The application's endpoints per engine.
    pub app: Vec<Engine<AppPoint>>,
    /// Writes per engine.
    pub writes: Vec<Engine<WritePoint>>,
    /// The backup, SQLite.
    pub backup: Option<BackupResult>,
    /// A long history's `db-check` per engine.
    pub histories: Vec<Engine<HistoryResult>>,
}

/// One engine's points.
#[derive(Debug, serde::Serialize)]
pub struct Engine<T> {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// Ordered by concurrency.
    pub points: Vec<T>,
}

/// Write throughput at one number of concurrent writers.
#[derive(Debug, serde::Serialize)]
pub struct WritePoint {
    /// Concurrent writers.
    pub writers: usize,
    /// Through this project's pool.
    pub ours: WriteResult,
    /// Through sqlx on its defaults.
    pub sqlx_defaults: WriteResult,
    /// SQLite: raw rusqlite, one connection per writer thread.
    pub raw: Option<WriteResult>,
    /// SQLite: raw rusqlite, one connection, one thread: the engine's own limit, measured
    /// right beside `ours`.
    pub raw_one: Option<WriteResult>,
}

/// A load's table cell: requests per second, and its p99 latency in ms.
fn cell(r: &crate::load::LoadResult) -> String {
    format!("{:.0} ({:.1})", r.per_sec, r.latency.p99_ms)
}

/// A goal of the issue and whether this run met it.
struct Goal {
    what: String,
    target: &'static str,
    measured: String,
    /// `None` for a reference figure without a goal.
    met: Option<bool>,
}

impl Report {
    fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        for engine in &self.readiness {
            let Some(p) = engine.points.iter().find(|p| p.connections == 256) else {
                continue;
            };
            let e = engine.engine;
            goals.push(Goal {
                what: format!("{e}: `/health/db` ÷ `/health`, 256 connections"),
                target: "≥ 0.8",
                measured: format!("{:.2}", p.ratio_to_health()),
                met: Some(p.ratio_to_health() >= 0.8),
            });
            goals.push(Goal {
                what: format!("{e}: `/health/db` ÷ naive anchor's, 256 connections"),
                target: "≥ 1.5",
                measured: format!("{:.2}", p.ratio_to_anchor()),
                met: Some(p.ratio_to_anchor() >= 1.5),
            });
            goals.push(Goal {
                what: format!("{e}: `/health/db` p99 and errors, 256 connections"),
                target: "≤ 15 ms, 0",
                measured: format!(
                    "{:.1} ms, {}",
                    p.health_db.latency.p99_ms, p.health_db.errors
                ),
                met: Some(p.health_db.latency.p99_ms <= 15.0 && p.health_db.errors == 0),
            });
        }
        for engine in &self.app {
            let e = engine.engine;
            for p in engine.points.iter().filter(|p| p.connections == 256) {
                let read = p.endpoint.starts_with("GET");
                let (target, met) = match (read, e) {
                    (true, "sqlite") => ("≥ 1.2", p.ratio_to_anchor() >= 1.2),
                    (true, _) => ("≥ 1", p.ratio_to_anchor() >= 1.0),
                    (false, "sqlite") => ("≥ 3", p.ratio_to_anchor() >= 3.0),
                    (false, _) => ("(no goal set)", true),
                };
                goals.push(Goal {
                    what: format!("{e}: `{}` ÷ naive anchor's, 256 connections", p.endpoint),
                    target,
                    measured: format!("{:.2}", p.ratio_to_anchor()),
                    met: (target != "(no goal set)").then_some(met),
                });
                if read {
                    goals.push(Goal {
                        what: format!("{e}: `{}` ÷ `/health`, 256 connections", p.endpoint),
                        target: "≥ 0.5",
                        measured: format!("{:.2}", p.ratio_to_health()),
                        met: Some(p.ratio_to_health() >= 0.5),
                    });
                }
                goals.push(Goal {
                    what: format!("{e}: `{}` p99 and errors, 256 connections", p.endpoint),
                    target: "≤ 20 ms, 0",
                    measured: format!("{:.1} ms, {}", p.ours.latency.p99_ms, p.ours.errors),
                    met: Some(p.ours.latency.p99_ms <= 20.0 && p.ours.errors == 0),
                });
            }
        }
        for engine in &self.writes {
            for p in engine
                .points
                .iter()
                .filter(|p| [1, 8, 32].contains(&p.writers))
            {
                let e = engine.engine;
                if let Some(raw) = &p.raw_one {
                    let ratio = p.ours.per_sec / raw.per_sec;
                    goals.push(Goal {
                        what: format!(
                            "{e}: writes ÷ raw SQLite (one connection), {} writers",
                            p.writers
                        ),
                        target: "≥ 0.5",
                        measured: format!("{ratio:.2}"),
                        met: Some(ratio >= 0.5),
                    });
                }
                let ratio = p.ours.per_sec / p.sqlx_defaults.per_sec;
                let target = if e == "sqlite" {
                    "≥ 10"
                } else {
                    "(no goal set)"
                };
                goals.push(Goal {
                    what: format!("{e}: writes ÷ sqlx defaults, {} writers", p.writers),
                    target,
                    measured: format!("{ratio:.2}"),
                    met: (e == "sqlite").then_some(ratio >= 10.0),
                });
                goals.push(Goal {
                    what: format!(
                        "{e}: write errors (\"database is locked\"), {} writers",
                        p.writers
                    ),
                    target: "0 (0)",
                    measured: format!("{} ({})", p.ours.errors, p.ours.locked),
                    met: Some(p.ours.errors == 0),
                });
            }
        }
        for engine in &self.histories {
            for h in &engine.points {
                goals.push(Goal {
                    what: format!(
                        "{}: `db-check` ÷ (`db-upgrade` from empty + `db-downgrade --to 0`), {} migrations ({:.2} s ÷ {:.2} s)",
                        engine.engine,
                        h.migrations,
                        h.check_secs,
                        h.upgrade_secs + h.downgrade_secs
                    ),
                    target: "≤ 4",
                    measured: format!("{:.2}", h.ratio()),
                    met: Some(h.ratio() <= 4.0),
                });
            }
        }
        if let Some(b) = &self.backup {
            let ratio = b.backup_secs / b.cp_secs;
            goals.push(Goal {
                what: format!(
                    "sqlite: backup ÷ `cp`, {:.0} MiB, writer running",
                    b.database_mib
                ),
                target: "≤ 4",
                measured: format!("{ratio:.2}"),
                met: Some(ratio <= 4.0),
            });
            let durable = b.backup_secs / b.cp_sync_secs;
            goals.push(Goal {
                what: "sqlite: backup ÷ (`cp` + `fsync` of the copy), the same run".into(),
                target: "(reference)",
                measured: format!("{durable:.2}"),
                met: None,
            });
            goals.push(Goal {
                what: "sqlite: writer's longest stall during the backup".into(),
                target: "≤ 50 ms",
                measured: format!("{:.1} ms", b.writer_max_stall_ms),
                met: Some(b.writer_max_stall_ms <= 50.0),
            });
            let limit = server::db::JOURNAL_SIZE_LIMIT as f64 / 1_048_576.0;
            goals.push(Goal {
                what: "sqlite: write-ahead log 1 s after the backup".into(),
                target: "≤ journal_size_limit",
                measured: format!("{:.1} MiB (limit {limit:.0} MiB)", b.wal_after_mib.1),
                met: Some(b.wal_after_mib.1 <= limit),
            });
        }
        goals
    }

    /// The generated section of `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let w = &mut md;
        let _ = writeln!(
            w,
            "Measured {} by `cargo xtask bench{}` (release build): {} CPUs, SQLite {}, PostgreSQL {}.\n",
            self.date,
            if self.quick { " --quick" } else { "" },
            self.cpus,
            self.sqlite_version,
            self.postgres_version
                .as_deref()
                .unwrap_or("not reachable (skipped)")
        );
        let _ = writeln!(
            w,
            "### Goals\n\n| measure | goal | measured | met |\n|---|---|---|---|"
        );
        for g in self.goals() {
            let met = match g.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(w, "| {} | {} | {} | {met} |", g.what, g.target, g.measured);
        }
        for engine in &self.readiness {
            let _ = writeln!(
                w,
                "\n### Readiness, {}: requests/s (p99 ms)\n\n| connections | `/health` | `/health/db` | anchor `/health` | anchor `/health/db` | db ÷ health | db ÷ anchor db | errors |\n|---|---|---|---|---|---|---|---|",
                engine.engine
            );
            for p in &engine.points {
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
                    p.connections,
                    cell(&p.health),
                    cell(&p.health_db),
                    cell(&p.anchor_health),
                    cell(&p.anchor_health_db),
                    p.ratio_to_health(),
                    p.ratio_to_anchor(),
                    p.health_db.errors
                );
            }
        }
        for engine in &self.app {
            let _ = writeln!(
                w,
                "\n### The application (notes example), {}: requests/s (p99 ms)\n\n| connections | endpoint | notes example | naive anchor | `/health` | ÷ anchor | ÷ `/health` | errors |\n|---|---|---|---|---|---|---|---|",
                engine.engine
            );
            for p in &engine.points {
                let _ = writeln!(
                    w,
                    "| {} | `{}` | {} | {} | {} | {:.2} | {:.2} | {} |",
                    p.connections,
                    p.endpoint,
                    cell(&p.ours),
                    cell(&p.anchor),
                    cell(&p.health),
                    p.ratio_to_anchor(),
                    p.ratio_to_health(),
                    p.ours.errors
                );
            }
        }
        for engine in &self.writes {
            let _ = writeln!(
                w,
                "\n### Writes, {}: transactions/s (p99 ms)\n\n| writers | this pool | sqlx defaults | raw, one connection per writer | raw, one connection | pool ÷ raw one | pool ÷ sqlx | errors (locked) |\n|---|---|---|---|---|---|---|---|",
                engine.engine
            );
            for p in &engine.points {
                let cell = |r: &WriteResult| format!("{:.0} ({:.1})", r.per_sec, r.latency.p99_ms);
                let opt = |r: &Option<WriteResult>| r.as_ref().map_or("–".into(), cell);
                let raw_ratio = p.raw_one.as_ref().map_or("–".into(), |r| {
                    format!("{:.2}", p.ours.per_sec / r.per_sec)
                });
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {raw_ratio} | {:.1} | {} ({}) |",
                    p.writers,
                    cell(&p.ours),
                    cell(&p.sqlx_defaults),
                    opt(&p.raw),
                    opt(&p.raw_one),
                    p.ours.per_sec / p.sqlx_defaults.per_sec,
                    p.ours.errors,
                    p.ours.locked
                );
            }
        }
        if let Some(b) = &self.backup {
            let phases: Vec<String> = b
                .phases
                .iter()
                .map(|(name, secs)| format!("{name} {secs:.2} s"))
                .collect();
            let _ = writeln!(
                w,
                "\n### Backup, sqlite\n\n| database | `cp` of the idle file | `cp` + `fsync` | backup, verified | phases | writer commits during it | writer's longest stall | WAL after / 1 s later |\n|---|---|---|---|---|---|---|---|\n| {:.0} MiB | {:.2} s | {:.2} s | {:.2} s | {} | {} | {:.1} ms | {:.1} / {:.1} MiB |",
                b.database_mib,
                b.cp_secs,
                b.cp_sync_secs,
                b.backup_secs,
                phases.join(", "),
                b.writer_commits,
                b.writer_max_stall_ms,
                b.wal_after_mib.0,
                b.wal_after_mib.1
            );
        }
        md
    }

    /// Writes the plot: throughput against concurrency, readiness and writes.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(450);
        let mut series = Vec::new();
        for engine in &self.readiness {
            let e = engine.engine;
            let at = |f: fn(&ReadinessPoint) -> f64| -> Vec<(f64, f64)> {
                engine
                    .points
                    .iter()
                    .map(|p| (p.connections as f64, f(p)))
                    .collect()
            };
            series.push((format!("{e} /health"), at(|p| p.health.per_sec)));
            series.push((format!("{e} /health/db"), at(|p| p.health_db.per_sec)));
            series.push((
                format!("{e} anchor /health/db"),
                at(|p| p.anchor_health_db.per_sec),
            ));
        }
        chart(
            &top,
            "Readiness: requests/s against HTTP connections",
            "connections",
            &series,
        )?;
        let mut series = Vec::new();
        for engine in &self.writes {
            let e = engine.engine;
            let at = |f: &dyn Fn(&WritePoint) -> Option<f64>| -> Vec<(f64, f64)> {
                engine
                    .points
                    .iter()
                    .filter_map(|p| Some((p.writers as f64, f(p)?)))
                    .collect()
            };
            series.push((format!("{e} this pool"), at(&|p| Some(p.ours.per_sec))));
            series.push((
                format!("{e} sqlx defaults"),
                at(&|p| Some(p.sqlx_defaults.per_sec)),
            ));
            let raw = at(&|p| p.raw.as_ref().map(|r| r.per_sec));
            if !raw.is_empty() {
                series.push((format!("{e} raw, connection per writer"), raw));
            }
        }
        chart(
            &bottom,
            "Writes: transactions/s against concurrent writers",
            "writers",
            &series,
        )?;
        root.present().context("cannot write the plot")?;
        Ok(())
    }
}

/// One log-x chart of `series` (label, points) in `area`.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (x_min, x_max, y_max) = points.fold((f64::MAX, 1.0f64, 1.0f64), |(a, b, c), &(x, y)| {
        (a.min(x), b.max(x), c.max(y))
    });
    let x_min = if x_min == f64::MAX { 1.0 } else { x_min };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_min..x_max.max(x_min * 2.0)).log_scale(),
            0.0..y_max * 1.1,
        )
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}
