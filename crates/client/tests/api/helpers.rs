//! A real Keyhaven for the tests. With `KEYHAVEN_URL` and `KEYHAVEN_ROOT_KEY` set (as
//! `scripts/with-server.sh` sets them) the tests use that server; otherwise each test
//! starts its own `keyhaven serve` in this process, over a real socket on 127.0.0.1:0
//! with a fresh SQLite database, so `cargo test` needs nothing else. Tests that stop
//! their server always start their own.

use std::net::SocketAddr;
use std::time::Duration;

use keyhaven_client::types::{CreateKey, CreateKeyspace, CreatedKey, KeyspaceView, RateLimit};
use keyhaven_client::{Client, ClientBuilder, ExposeSecret, Method};
use keyhaven_service::clock::Clock;
use keyhaven_service::config::Config;
use keyhaven_service::root_keys;
use keyhaven_store::{SqliteStore, Store, pepper_file};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub url: String,
    /// A root key with every scope.
    pub root_key: String,
    own: Option<Own>,
}

struct Own {
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(own) = &mut self.own
            && let Some(tx) = own.shutdown.take()
        {
            let _ = tx.send(());
        }
    }
}

impl TestServer {
    /// The server named by `KEYHAVEN_URL`/`KEYHAVEN_ROOT_KEY`, or one of our own.
    pub async fn start() -> Self {
        match (
            std::env::var("KEYHAVEN_URL"),
            std::env::var("KEYHAVEN_ROOT_KEY"),
        ) {
            (Ok(url), Ok(root_key)) if !url.is_empty() && !root_key.is_empty() => Self {
                url,
                root_key,
                own: None,
            },
            _ => Self::spawn().await,
        }
    }

    /// A fresh server in this process, whatever the environment says.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A fresh server in this process, its default configuration changed by `configure`
    /// (with a master key for recoverable keys, as `keyhaven serve` has).
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        configure(&mut config);
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(SqliteStore::open(&config.database_path()).await.unwrap());
        let (peppers, _) = pepper_file::load_or_create(dir.path(), None).unwrap();
        let (master, _) = pepper_file::load_or_create_master(dir.path(), None).unwrap();
        let root = root_keys::create(
            store.as_ref(),
            &peppers,
            vec!["*".into()],
            None,
            None,
            root_keys::CLI_ACTOR,
        )
        .await
        .unwrap();
        let signing_keys =
            keyhaven_service::bootstrap::load_signing_keys(dir.path(), store.as_ref())
                .await
                .unwrap();
        let state = keyhaven_server::AppState::with_parts(
            store,
            peppers,
            Some(master),
            config,
            Clock::System,
        )
        .unwrap();
        keyhaven_service::tokens::install(&state, signing_keys);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(keyhaven_server::serve(listener, state, async {
            let _ = rx.await;
        }));
        Self {
            url: format!("http://{addr}"),
            root_key: root.key().expose_secret().to_owned(),
            own: Some(Own {
                _dir: dir,
                shutdown: Some(tx),
                task: Some(task),
            }),
        }
    }

    /// Stops a server of our own and waits until it is down.
    pub async fn stop(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("only a server of our own can be stopped");
        if let Some(tx) = own.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = own.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(35), task).await;
        }
    }

    pub fn builder(&self) -> ClientBuilder {
        Client::builder(self.url.clone(), self.root_key.clone())
    }

    /// A client with the default options (cache on).
    pub fn client(&self) -> Client {
        self.builder().build().unwrap()
    }

    /// A root key with only `scopes`, made through the API.
    pub async fn root_key_with(&self, scopes: &[&str]) -> String {
        let created = self
            .client()
            .request(
                Method::POST,
                "/v1/root-keys",
                Some(&json!({ "scopes": scopes })),
            )
            .await
            .unwrap();
        created["key"].as_str().unwrap().to_owned()
    }
}

/// `len` random lowercase letters.
pub fn random_lowercase(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    keyhaven_core::random::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| char::from(b'a' + b % 26)).collect()
}

/// A new keyspace with a prefix of its own (`t_<random>`).
pub async fn keyspace(client: &Client) -> KeyspaceView {
    let prefix = format!("t_{}", random_lowercase(10));
    client
        .keyspaces()
        .create(&CreateKeyspace::new(prefix.clone(), prefix))
        .await
        .unwrap()
}

/// A new key of `keyspace` with `scopes`.
pub async fn key(client: &Client, keyspace: &KeyspaceView, scopes: &[&str]) -> CreatedKey {
    let mut input = CreateKey::new(keyspace.id.clone());
    input.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    client.keys().create(&input).await.unwrap()
}

/// A new key allowed one use per minute.
pub async fn limited_key(client: &Client, keyspace: &KeyspaceView) -> CreatedKey {
    let mut input = CreateKey::new(keyspace.id.clone());
    input.ratelimits = vec![RateLimit::new("requests", 1, 60_000)];
    client.keys().create(&input).await.unwrap()
}

/// The plaintext of a created key.
pub fn plain(created: &CreatedKey) -> String {
    created.key.expose_secret().to_owned()
}

/// A URL where nothing listens (a port bound, then released).
pub async fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Verifies `key` until the answer comes from the cache (the stream must vouch first).
pub async fn until_cached(client: &Client, key: &str) {
    assert!(
        client.wait_until_coherent(Duration::from_secs(5)).await,
        "the change stream never vouched"
    );
    for _ in 0..500 {
        let before = client.cache_stats().hits;
        let answer = client.verify(key).await.unwrap();
        assert!(answer.valid, "{answer:?}");
        if client.cache_stats().hits > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!(
        "the key never came from the cache: {:?}",
        client.cache_stats()
    );
}
