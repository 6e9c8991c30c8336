//! The `turnpike` binary: administration commands (topology, schemas, migrations) and, as the pipeline
//! grows, one subcommand per stage.

mod admin;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use turnpike_core::Endpoints;

/// Turnpike: a production chatbot pipeline on Kafka.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Topology file.
    #[arg(long, global = true, env = "TURNPIKE_TOPOLOGY", default_value = "topology/turnpike.toml")]
    topology: PathBuf,
    /// Folder of the Avro schemas (default: `schemas/` beside the topology folder).
    #[arg(long, global = true, env = "TURNPIKE_SCHEMAS")]
    schemas: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check or create the topics of the topology.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Register every topic's value schema in the schema registry (BACKWARD compatibility).
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Create the CQL keyspace and apply pending migrations.
    Migrate {
        /// CQL replication map for a new keyspace.
        #[arg(
            long,
            env = "TURNPIKE_CQL_REPLICATION",
            default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )]
        replication: String,
    },
    /// Everything a fresh cluster needs: validate, create topics, register schemas, migrate.
    Setup {
        /// CQL replication map for a new keyspace.
        #[arg(
            long,
            env = "TURNPIKE_CQL_REPLICATION",
            default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )]
        replication: String,
    },
}

#[derive(Subcommand)]
enum TopologyAction {
    /// Validate the topology file against the rules and the schemas folder.
    Validate,
    /// Create missing topics (idempotent) and check partition counts.
    Apply,
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Register all schemas.
    Register,
}

impl Cli {
    fn schemas_dir(&self) -> PathBuf {
        self.schemas.clone().unwrap_or_else(|| {
            let dir = self.topology.parent().unwrap_or(std::path::Path::new("."));
            dir.join("..").join("schemas")
        })
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoints = Endpoints::from_env();
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Topology { action: TopologyAction::Validate } => {
                admin::validate(&cli.topology, &cli.schemas_dir())
            }
            Command::Topology { action: TopologyAction::Apply } => {
                admin::apply(&cli.topology, &cli.schemas_dir(), &endpoints).await
            }
            Command::Schemas { action: SchemasAction::Register } => {
                admin::register(&cli.topology, &cli.schemas_dir(), &endpoints).await
            }
            Command::Migrate { replication } => admin::migrate(&endpoints, replication).await,
            Command::Setup { replication } => {
                admin::apply(&cli.topology, &cli.schemas_dir(), &endpoints).await?;
                admin::register(&cli.topology, &cli.schemas_dir(), &endpoints).await?;
                admin::migrate(&endpoints, replication).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
