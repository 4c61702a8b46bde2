//! `spawn_app()`: a real server on 127.0.0.1:0 with a fresh database, in this process,
//! and a typed client for it. `spawn_process()` runs the real `keyhaven serve` binary
//! instead, for tests that kill it or read its log.
//!
//! The engine is SQLite (a file per test), or PostgreSQL (a fresh database per test on
//! the throwaway server `.ci/run` starts) when `KEYHAVEN_TEST_STORE=postgres`: `.ci/run`
//! runs this whole suite once with each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyhaven_server::AppState;
use keyhaven_server::routes::keys::CreatedKey;
use keyhaven_server::routes::keyspaces::KeyspaceView;
use keyhaven_server::routes::verify::VerifyResponse;
use keyhaven_service::clock::Clock;
use keyhaven_service::config::Config;
use keyhaven_service::root_keys;
use keyhaven_store::pepper_file;
use keyhaven_store::{PgOptions, PgStore, SqliteStore, Store};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// A root key with every scope.
    pub root_key: String,
    pub store: Arc<dyn Store>,
    pub peppers: Arc<keyhaven_core::PepperSet>,
    /// The SQLite file (meaningful when `database_url` is `None`).
    pub db_path: PathBuf,
    /// The PostgreSQL database, on a PostgreSQL run.
    pub database_url: Option<String>,
    /// The server's clock: manual, starting at the real time; tests move it by hand.
    pub clock: Clock,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP client for the tests. reqwest is built with rustls but no crypto provider (the
/// server installs ring before building its webhook client); the tests do the same.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    configure(&mut config);
    let db_path = config.database_path();
    let database_url = database_url_for(dir.path()).await;
    config.database_url.clone_from(&database_url);
    let store = open_store(&db_path, database_url.as_deref()).await;
    let (peppers, _) = pepper_file::load_or_create(dir.path(), None).unwrap();
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
    let clock = Clock::manual(keyhaven_service::clock::now());
    let (master, _) = pepper_file::load_or_create_master(dir.path(), None).unwrap();
    let signing_keys = keyhaven_service::bootstrap::load_signing_keys(dir.path(), store.as_ref())
        .await
        .unwrap();
    let state =
        AppState::with_parts(store.clone(), peppers, Some(master), config, clock.clone()).unwrap();
    keyhaven_service::tokens::install(&state, signing_keys);
    let peppers = state.peppers.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(keyhaven_server::serve(listener, state, async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        http: http_client(),
        root_key: root.key().expose_secret().to_owned(),
        store,
        peppers,
        db_path,
        database_url,
        clock,
        _dir: dir,
        shutdown: Some(tx),
    }
}

impl TestApp {
    /// Runs SQL on the app's database from outside the server: `sqlite` on a SQLite run,
    /// `postgres` on a PostgreSQL run (each may hold several statements).
    pub async fn execute_sql(&self, sqlite: &str, postgres: &str) {
        match &self.database_url {
            Some(url) => {
                let db = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(postgres))
                    .execute(&db)
                    .await
                    .unwrap();
                db.close().await;
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&self.db_path);
                let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sqlite))
                    .execute(&db)
                    .await
                    .unwrap();
                db.close().await;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request authenticated with `root`.
    pub fn request_as(&self, root: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(root)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.root_key, method, path)
    }

    pub async fn send_as(
        &self,
        root: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request_as(root, method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.send_as(&self.root_key, method, path, body).await
    }

    pub async fn create_keyspace(&self, prefix: &str) -> KeyspaceView {
        let (status, body) = self
            .send(
                Method::POST,
                "/v1/keyspaces",
                Some(&json!({"name": prefix, "prefix": prefix})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn create_key(&self, body: Value) -> CreatedKey {
        let (status, body) = self.send(Method::POST, "/v1/keys", Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn verify_as(&self, root: &str, key: &str) -> VerifyResponse {
        let (status, body) = self
            .send_as(
                root,
                Method::POST,
                "/v1/keys/verify",
                Some(&json!({ "key": key })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn verify(&self, key: &str) -> VerifyResponse {
        self.verify_as(&self.root_key, key).await
    }

    /// A new root key with `scopes`, limited to `keyspaces` when given.
    pub async fn root_key(&self, scopes: &[&str], keyspaces: Option<&[&str]>) -> String {
        let key = root_keys::create(
            self.store.as_ref(),
            &self.peppers,
            scopes.iter().map(|s| (*s).to_owned()).collect(),
            keyspaces.map(|k| k.iter().map(|s| (*s).to_owned()).collect()),
            None,
            root_keys::CLI_ACTOR,
        )
        .await
        .unwrap();
        key.key().expose_secret().to_owned()
    }

    pub async fn healthy(&self) -> bool {
        self.http
            .get(self.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A `keyhaven serve` process. Killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub log_path: PathBuf,
    pub stdout_path: PathBuf,
    pub data_dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for a server a test starts. Below Linux's ephemeral range
/// (32768 and up), so no outgoing connection of the busy suite can take it between this
/// call and the server's own bind (a port from `bind(0)` could be, and was); and a
/// different one on every call in this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts somewhere else in the span.
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(FIRST + n % SPAN).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Whether this run's engine is PostgreSQL (`KEYHAVEN_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("KEYHAVEN_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("KEYHAVEN_TEST_STORE={other}: use sqlite or postgres"),
    }
}

/// On a PostgreSQL run, the database that belongs to `data_dir` (created on first use,
/// so a restarted server, a CLI command and a second node on that directory share it).
pub async fn database_url_for(data_dir: &Path) -> Option<String> {
    static URLS: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    if !on_postgres() {
        return None;
    }
    if let Some((_, url)) = URLS.lock().unwrap().iter().find(|(d, _)| d == data_dir) {
        return Some(url.clone());
    }
    let admin = keyhaven_store::postgres::testing::admin_url()
        .expect("KEYHAVEN_TEST_STORE=postgres needs KEYHAVEN_TEST_POSTGRES_URL");
    let url = keyhaven_store::postgres::testing::fresh_database(&admin)
        .await
        .unwrap();
    URLS.lock()
        .unwrap()
        .push((data_dir.to_owned(), url.clone()));
    Some(url)
}

/// The store a server on `data_dir` uses, opened from the test (for checks from outside).
pub async fn store_for(data_dir: &Path) -> Arc<dyn Store> {
    let url = database_url_for(data_dir).await;
    open_store(
        &data_dir.join(keyhaven_store::sqlite::DATABASE_FILE_NAME),
        url.as_deref(),
    )
    .await
}

async fn open_store(sqlite_path: &Path, database_url: Option<&str>) -> Arc<dyn Store> {
    match database_url {
        Some(url) => Arc::new(PgStore::open(url, &PgOptions::default()).await.unwrap()),
        None => Arc::new(SqliteStore::open(sqlite_path).await.unwrap()),
    }
}

/// A `keyhaven` command acting on `data_dir`'s database (`KEYHAVEN_DATABASE_URL` on a
/// PostgreSQL run), without the pepper and master key variables of this environment.
pub async fn keyhaven(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyhaven"));
    command
        .env_remove("KEYHAVEN_PEPPER")
        .env_remove("KEYHAVEN_MASTER_KEY")
        .env_remove("KEYHAVEN_SIGNING_KEYS")
        .env_remove("KEYHAVEN_DATABASE_URL");
    if let Some(url) = database_url_for(data_dir).await {
        command.env("KEYHAVEN_DATABASE_URL", url);
    }
    command
}

/// Starts `keyhaven serve` on `data_dir` (stdout and stderr to files in `logs`) and
/// waits until `/healthz` answers.
pub async fn spawn_process(data_dir: &Path, logs: &Path, envs: &[(&str, &str)]) -> ServerProcess {
    spawn_process_limited(data_dir, logs, envs, None).await
}

/// [`spawn_process`] with the server's descriptor limit (soft and hard) set to `nofile`.
pub async fn spawn_process_limited(
    data_dir: &Path,
    logs: &Path,
    envs: &[(&str, &str)],
    nofile: Option<u64>,
) -> ServerProcess {
    spawn_process_with(data_dir, logs, envs, nofile, &[]).await
}

/// [`spawn_process_limited`] with `args` after the `serve` command's own.
pub async fn spawn_process_with(
    data_dir: &Path,
    logs: &Path,
    envs: &[(&str, &str)],
    nofile: Option<u64>,
    args: &[&str],
) -> ServerProcess {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let n = std::fs::read_dir(logs).map(|d| d.count()).unwrap_or(0);
    let log_path = logs.join(format!("server-{n}.log"));
    let stdout_path = logs.join(format!("server-{n}.out"));
    let mut command = keyhaven(data_dir).await;
    if let Some(n) = nofile {
        // `ulimit` in a shell that then becomes the server: the limit is the server's own.
        let program = command.get_program().to_owned();
        let mut limited = Command::new("sh");
        limited
            .arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .arg(program);
        for (name, value) in command.get_envs() {
            match value {
                Some(v) => limited.env(name, v),
                None => limited.env_remove(name),
            };
        }
        command = limited;
    }
    let child = command
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &addr.to_string()])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let server = ServerProcess {
        child,
        base: format!("http://{addr}"),
        log_path,
        stdout_path,
        data_dir: data_dir.to_owned(),
    };
    let http = http_client();
    for _ in 0..300 {
        if http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "server did not start: {}",
        std::fs::read_to_string(&server.log_path).unwrap_or_default()
    );
}

impl ServerProcess {
    /// The first root key: stdout is not a terminal here, so the first start wrote it to
    /// `<data dir>/initial-root-key` (and the welcome text names that file instead).
    pub fn first_root_key(&self) -> String {
        let path = self.data_dir.join("initial-root-key");
        let key = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no first root key in {}: {e}", path.display()));
        let key = key.trim_end().to_owned();
        assert!(key.starts_with("kh_root_"), "{key}");
        key
    }

    /// The status of `GET path` with `root` as the bearer token.
    pub async fn get_status(&self, root: &str, path: &str) -> StatusCode {
        let url = format!("{}{path}", self.base);
        let response = http_client().get(url).bearer_auth(root).send().await;
        response.unwrap().status()
    }
}

/// `key` (a key of a keyspace with `prefix`) with another secret: the same key id, a
/// valid checksum, so it parses and is looked up, and the secret does not match.
pub fn with_wrong_secret(key: &str, prefix: &str) -> String {
    let mut other = keyhaven_core::generate(&keyhaven_core::Prefix::new(prefix).unwrap())
        .unwrap()
        .key()
        .expose_secret()
        .to_owned();
    let secret_start = prefix.len() + 1 + 13;
    other.replace_range(0..secret_start, &key[..secret_start]);
    let body = &other[..other.len() - 6];
    let fixed = format!(
        "{body}{}",
        std::str::from_utf8(&keyhaven_core::format::checksum(body.as_bytes())).unwrap()
    );
    assert!(keyhaven_core::parse(&fixed).is_ok());
    fixed
}

/// POSTs `body` as JSON to `base` + `path` with `root`: the status and the JSON answer,
/// or status 0 when the server did not answer (within 10 s), as when it was killed.
pub async fn try_post(
    http: &reqwest::Client,
    base: &str,
    root: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    match http
        .post(format!("{base}{path}"))
        .bearer_auth(root)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// POSTs `body` as JSON to `url` with `root`; asserts a 2xx and returns the JSON answer.
pub async fn post_json(http: &reqwest::Client, url: &str, root: &str, body: &Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(root)
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Runs `keyhaven ARGS --data-dir DATA`: whether it succeeded, its stdout and stderr.
pub async fn run_keyhaven(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = keyhaven(data)
        .await
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `POST base+path` with `bearer` and a JSON body; the JSON answer, whatever its status.
pub async fn post_to(base: &str, bearer: &str, path: &str, body: Value) -> Value {
    http_client()
        .post(format!("{base}{path}"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
