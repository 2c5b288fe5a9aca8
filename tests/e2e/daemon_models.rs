//! The model registry through the real daemon: explicit load (with progress) and unload, LRU
//! eviction under `max_loaded`, idle unload, one load for many concurrent first requests, no
//! eviction of a model with requests waiting, and hub downloads from a local server that behaves
//! like the Hugging Face Hub (including the offline case).

use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Channel;
use zeta_hub::testing::FakeHub;
use zeta_proto::v1;
use zeta_proto::v1::generation_client::GenerationClient;
use zeta_tests::{Daemon, generate, tiny, tiny_config, tokens};

async fn list(d: &Daemon) -> Vec<v1::ModelInfo> {
    d.models().await.list_models(v1::ListModelsRequest {}).await.unwrap().into_inner().models
}

async fn state(d: &Daemon, id: &str) -> (i32, u32) {
    let m = list(d).await.into_iter().find(|m| m.id == id).unwrap_or_else(|| panic!("{id} not listed"));
    (m.state, m.load_count)
}

const LOADED: i32 = v1::ModelState::Loaded as i32;
const UNLOADED: i32 = v1::ModelState::Unloaded as i32;
const UNLOADING: i32 = v1::ModelState::Unloading as i32;

#[tokio::test(flavor = "multi_thread")]
async fn load_unload_and_lru_eviction() {
    let config = tiny_config(
        "preload_default = false\nmax_loaded = 2",
        &[("a", "llama-f32"), ("b", "qwen3_moe-f32"), ("c", "gemma3-q4")],
    );
    let d = Daemon::builder().config(&config).start().await;
    let mut m = d.models().await;
    // Explicit load streams progress and ends with the loaded model.
    let mut progress = m.load_model(v1::LoadModelRequest { model: "a".into() }).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(p) = progress.message().await.unwrap() {
        events.push(p.progress.unwrap());
    }
    match events.last() {
        Some(v1::load_progress::Progress::Loaded(info)) => {
            assert_eq!(info.id, "a");
            assert_eq!(info.state, LOADED);
            assert_eq!(info.architecture, "llama");
            assert!(info.weight_bytes > 0);
        }
        other => panic!("load ended with {other:?}"),
    }
    assert_eq!(state(&d, "a").await.0, LOADED);
    assert_eq!(state(&d, "b").await.0, UNLOADED);

    let mut g = d.generation().await;
    generate(&mut g, tokens("b", vec![1, 2], 2)).await.unwrap();
    generate(&mut g, tokens("a", vec![1, 2], 2)).await.unwrap(); // a is now the most recent
    // A third model evicts the least recently used (b).
    generate(&mut g, tokens("c", vec![1, 2], 2)).await.unwrap();
    assert_eq!(state(&d, "a").await.0, LOADED);
    assert_eq!(state(&d, "b").await.0, UNLOADED);
    assert_eq!(state(&d, "c").await.0, LOADED);
    // The listing names each loaded model's family.
    generate(&mut g, tokens("b", vec![1, 2], 2)).await.unwrap();
    let arch = |id: &str, all: &[v1::ModelInfo]| all.iter().find(|m| m.id == id).unwrap().architecture.clone();
    let all = list(&d).await;
    assert_eq!((arch("b", &all), arch("c", &all)), ("qwen3_moe".to_string(), "gemma3".to_string()));
    generate(&mut g, tokens("a", vec![1, 2], 2)).await.unwrap();

    // Explicit unload.
    let r = m.unload_model(v1::UnloadModelRequest { model: "a".into(), force: false }).await.unwrap().into_inner();
    assert!(r.was_loaded);
    assert_eq!(state(&d, "a").await.0, UNLOADED);
    let r = m.unload_model(v1::UnloadModelRequest { model: "a".into(), force: false }).await.unwrap().into_inner();
    assert!(!r.was_loaded);
    let e = m.unload_model(v1::UnloadModelRequest { model: "zzz".into(), force: false }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = m.load_model(v1::LoadModelRequest { model: "zzz".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_requests_cause_one_load() {
    let config = tiny_config("preload_default = false", &[("a", "qwen3-q4")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = d.generation().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let mut g = g.clone();
            tokio::spawn(async move { generate(&mut g, tokens("a", vec![1, 2, i], 3)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().tokens.len(), 3);
    }
    assert_eq!(state(&d, "a").await, (LOADED, 1), "eight first requests, one load");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_models_unload_but_the_default_stays() {
    let config =
        tiny_config("idle_unload_seconds = 1\ndefault_model = \"d\"", &[("d", "llama-f32"), ("x", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let mut g = d.generation().await;
    generate(&mut g, tokens("x", vec![1, 2], 2)).await.unwrap();
    assert_eq!(state(&d, "x").await.0, LOADED);
    let start = Instant::now();
    while state(&d, "x").await.0 == LOADED {
        assert!(start.elapsed() < Duration::from_secs(10), "x never unloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(state(&d, "d").await.0, LOADED, "the default model is pinned");
    assert!(d.logs().contains("unloading idle model"));
}

/// A model kept busy: one request running and six queued behind it (the configs give
/// max_batch = 1), ~2,800 tokens of work, so it still has requests when the test acts, on a fast
/// machine too (one queued request was done within 100 ms once).
struct Busy {
    running: tonic::Streaming<v1::GenerateEvent>,
    queued: Vec<tokio::task::JoinHandle<Result<zeta_tests::Outcome, tonic::Status>>>,
}

impl Busy {
    async fn start(g: &GenerationClient<Channel>, model: &str) -> Busy {
        let long = || {
            let mut r = tokens(model, vec![5, 6, 7], 400);
            r.sampling.as_mut().unwrap().logit_bias = [(450, -100.0), (452, -100.0)].into();
            r
        };
        let mut running = g.clone().generate(long()).await.unwrap().into_inner();
        running.message().await.unwrap();
        let queued = (0..6)
            .map(|_| {
                let (mut g, r) = (g.clone(), long());
                tokio::spawn(async move { generate(&mut g, r).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        Busy { running, queued }
    }

    /// Waits for every request, which must complete untouched.
    async fn finish(mut self) {
        while self.running.message().await.unwrap().is_some() {}
        for q in self.queued {
            assert_eq!(q.await.unwrap().unwrap().tokens.len(), 400);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_requests_is_never_evicted() {
    let config = tiny_config(
        "max_loaded = 2\ndefault_model = \"d\"\nmax_batch = 1",
        &[("d", "llama-f32"), ("busy", "qwen2-f32"), ("other", "mistral-f32")],
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = d.generation().await;
    let busy = Busy::start(&g, "busy").await;
    // `other` needs a slot: the default is pinned and `busy` has requests, so nothing can go.
    let err = generate(&mut g.clone(), tokens("other", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("busy (busy)") && err.message().contains("d (pinned)"), "{}", err.message());
    assert_eq!(state(&d, "busy").await.0, LOADED);
    busy.finish().await;
    // Once idle, it can be evicted.
    generate(&mut g.clone(), tokens("other", vec![1], 2)).await.unwrap();
    assert_eq!(state(&d, "busy").await.0, UNLOADED);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unloading_model_counts_until_its_requests_end() {
    let config = tiny_config(
        "max_loaded = 2\ndefault_model = \"d\"\nmax_batch = 1",
        &[("d", "llama-f32"), ("a", "qwen2-f32"), ("b", "mistral-f32")],
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = d.generation().await;
    let mut m = d.models().await;
    let busy = Busy::start(&g, "a").await;
    let r = m.unload_model(v1::UnloadModelRequest { model: "a".into(), force: false }).await.unwrap().into_inner();
    assert!(r.was_loaded && r.still_running > 0, "{r:?}");
    // Its engine still runs them, so it is listed as unloading and still takes its slot: `b`
    // finds d (pinned) and a (unloading) in the two, and is told to come back.
    assert_eq!(state(&d, "a").await.0, UNLOADING);
    let engines = d.status().await.engines;
    assert!(engines.iter().any(|e| e.names == ["a"] && e.unloading && e.active + e.queued > 0), "{engines:?}");
    let err = generate(&mut g.clone(), tokens("b", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("a (unloading"), "{}", err.message());
    assert!(err.metadata().get("retry-after").is_some());
    // Every request on `a` completes untouched; then it is gone and `b` loads.
    busy.finish().await;
    let start = Instant::now();
    while state(&d, "a").await.0 != UNLOADED {
        assert!(start.elapsed() < Duration::from_secs(10), "a still unloading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    generate(&mut g.clone(), tokens("b", vec![1], 2)).await.unwrap();
    // With nothing running on it, an unload is done when it answers.
    let r = m.unload_model(v1::UnloadModelRequest { model: "b".into(), force: false }).await.unwrap().into_inner();
    assert_eq!((r.was_loaded, r.still_running), (true, 0));
    drop(d);

    // Only the pinned default in the way: no wait helps, so the answer is not "busy".
    let config = tiny_config("max_loaded = 1\ndefault_model = \"d\"", &[("d", "llama-f32"), ("a", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let err = generate(&mut d.generation().await, tokens("a", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert_eq!(err.metadata().get("zeta-code").map(|v| v.to_str().unwrap()), Some("no_room"));
    assert!(err.metadata().get("retry-after").is_none());
    assert!(err.message().contains("d (pinned)") && err.message().contains("raise max_loaded"), "{}", err.message());
    // And the model itself did nothing wrong: it is unloaded, not failed.
    assert_eq!(state(&d, "a").await.0, UNLOADED);
    // A second name of the pinned model's file, idle, is as unmovable as the pinned name.
    drop(d);
    let file = tiny("llama-f32");
    let config = format!(
        "max_loaded = 1\ndefault_model = \"d\"\n[models.d]\npath = {file:?}\n[models.d2]\npath = {file:?}\n\
         [models.a]\npath = {:?}\n",
        tiny("qwen2-f32")
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let mut g = d.generation().await;
    generate(&mut g, tokens("d2", vec![1], 2)).await.unwrap();
    let err = generate(&mut g, tokens("a", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    drop(d);

    // The budget is held with the real size, known only once built: each model takes ~0.5 MB
    // of weights and KV reserve plus the 2 MB prefix cache counted for each, so the pinned
    // default (~2.6 MB) and a's file (~0.5 MB) fit in 4 MB, and a's real need does not.
    let config = tiny_config(
        "max_loaded = 4\ndefault_model = \"d\"\nmemory_budget = \"4MB\"\nprefix_cache = \"2MB\"",
        &[("d", "llama-f32"), ("a", "qwen2-f32")],
    );
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let err = generate(&mut d.generation().await, tokens("a", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("memory budget") && err.message().contains("raise memory_budget"),
        "{}",
        err.message()
    );
    assert_eq!(state(&d, "a").await.0, UNLOADED);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unload_during_a_load_stops_it() {
    // Two names of one repo: the second waits on the first one's load.
    let hub = FakeHub::builder().repo("test-org/tiny-llama", tiny("llama-q4")).start().unwrap();
    let hf = tempfile::tempdir().unwrap();
    let config = "preload_default = false\n[models.h1]\nhub = \"test-org/tiny-llama\"\n\
                  [models.h2]\nhub = \"test-org/tiny-llama\"\n";
    let d = Daemon::builder()
        .config(config)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", hf.path())
        .env("HF_HUB_OFFLINE", "0")
        .start()
        .await;
    const LOADING: i32 = v1::ModelState::Loading as i32;
    const DOWNLOADING: i32 = v1::ModelState::Downloading as i32;
    let loading = async |id: &str| {
        let start = Instant::now();
        while ![LOADING, DOWNLOADING].contains(&state(&d, id).await.0) {
            assert!(start.elapsed() < Duration::from_secs(10), "{id} never started loading: {}", d.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    hub.hold();
    let request = |mut g: GenerationClient<Channel>, id: &'static str| {
        tokio::spawn(async move { generate(&mut g, tokens(id, vec![1, 2], 2)).await })
    };
    let first = request(d.generation().await, "h1");
    loading("h1").await;
    let second = request(d.generation().await, "h2");
    loading("h2").await;
    let mut m = d.models().await;
    let r = m.unload_model(v1::UnloadModelRequest { model: "h1".into(), force: false }).await.unwrap().into_inner();
    assert!(r.was_loaded, "a load in progress was stopped");
    let err = first.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("unloaded while it was loading"), "{}", err.message());
    assert_eq!(state(&d, "h1").await.0, UNLOADED, "stopped, not failed");
    // The other name was not unloaded: its request goes on, with a load of its own, and the
    // stopped load, stopped before its build began, builds nothing once its download ends.
    hub.release();
    assert_eq!(second.await.unwrap().unwrap().tokens.len(), 2);
    assert_eq!(state(&d, "h2").await.0, LOADED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = d.logs();
    let builds = logs.lines().filter(|l| l.contains("building model")).count();
    assert_eq!(builds, 1, "the stopped load built a model nobody wanted:\n{logs}");
    assert!(!logs.contains("dropping a load that was unloaded while it ran"), "{logs}");
    assert_eq!(state(&d, "h1").await.0, UNLOADED);
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_models_download_once_and_work_offline_from_the_cache() {
    let hub = FakeHub::builder().repo("test-org/tiny-llama", tiny("llama-q4")).start().unwrap();
    let hf = tempfile::tempdir().unwrap();
    let daemon = |offline: bool| {
        Daemon::builder()
            .config("preload_default = false")
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HOME", hf.path())
            .env("HF_HUB_OFFLINE", if offline { "1" } else { "0" })
    };
    // Offline with an empty cache: a clear not-found, no request to the hub.
    let d = daemon(true).start().await;
    let err = generate(&mut d.generation().await, tokens("test-org/tiny-llama", vec![1, 2], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains("HF_HUB_OFFLINE"), "{}", err.message());
    assert_eq!(hub.request_count(), 0);
    drop(d);

    // Online: LoadModel streams download progress, then the model serves.
    let d = daemon(false).start().await;
    let mut progress = d
        .models()
        .await
        .load_model(v1::LoadModelRequest { model: "test-org/tiny-llama".into() })
        .await
        .unwrap()
        .into_inner();
    let (mut downloads, mut loaded) = (0, false);
    while let Some(p) = progress.message().await.unwrap() {
        match p.progress.unwrap() {
            v1::load_progress::Progress::Download(_) => downloads += 1,
            v1::load_progress::Progress::Loaded(_) => loaded = true,
            v1::load_progress::Progress::Loading(_) => {}
        }
    }
    assert!(downloads > 0 && loaded, "downloads {downloads}, loaded {loaded}");
    let out = generate(&mut d.generation().await, tokens("test-org/tiny-llama", vec![1, 2], 3)).await.unwrap();
    assert_eq!(out.tokens.len(), 3);
    let files: Vec<String> = hub.requests().iter().map(|r| r.path.clone()).collect();
    assert!(files.iter().any(|p| p.ends_with("model.safetensors")), "{files:?}");
    drop(d);

    // Offline again: the cache serves it, with no request.
    hub.clear_requests();
    let d = daemon(true).start().await;
    let out = generate(&mut d.generation().await, tokens("test-org/tiny-llama", vec![1, 2], 3)).await.unwrap();
    assert_eq!(out.tokens.len(), 3);
    assert_eq!(hub.request_count(), 0);

    // An unknown repo is NOT_FOUND, and nothing loaded is disturbed.
    drop(d);
    let d = daemon(false).start().await;
    let err = generate(&mut d.generation().await, tokens("test-org/no-such-model", vec![1], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(!list(&d).await.iter().any(|m| m.id.contains("no-such-model")), "failed ad-hoc models are not listed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_download_resumes() {
    let hub = FakeHub::builder().repo("test-org/tiny-qwen", tiny("qwen3-f32")).start().unwrap();
    hub.cut_after("model.safetensors", 20_000, 1);
    let hf = tempfile::tempdir().unwrap();
    let d = Daemon::builder()
        .config("preload_default = false")
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", hf.path())
        .env("HF_HUB_OFFLINE", "0")
        .start()
        .await;
    let out = generate(&mut d.generation().await, tokens("test-org/tiny-qwen", vec![1, 2], 3)).await.unwrap();
    assert_eq!(out.tokens.len(), 3);
    // The weights come from the CDN side after a redirect; the retry asks for the rest only.
    let ranged =
        hub.requests().iter().filter(|r| r.range.as_deref().is_some_and(|r| r.starts_with("bytes=20000-"))).count();
    assert!(ranged >= 1, "the second attempt continued with a Range request: {:?}", hub.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_budget_evicts_the_least_recently_used() {
    // Each tiny model accounts for ~0.6 MB (its weights plus a KV reservation for its 512-token
    // context; no prefix cache): 1 MB holds one of them, not two.
    let config = tiny_config(
        "preload_default = false\nmax_loaded = 8\nmemory_budget = \"1MB\"\nprefix_cache = 0",
        &[("a", "llama-f32"), ("b", "qwen2-f32")],
    );
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    generate(&mut g, tokens("a", vec![1, 2], 2)).await.unwrap();
    assert_eq!(state(&d, "a").await.0, LOADED);
    let models = list(&d).await;
    let a = models.iter().find(|m| m.id == "a").unwrap();
    assert!(a.weight_bytes > 300_000 && a.weight_bytes < 700_000, "{}", a.weight_bytes);
    generate(&mut g, tokens("b", vec![1, 2], 2)).await.unwrap();
    assert_eq!(state(&d, "b").await.0, LOADED);
    assert_eq!(state(&d, "a").await.0, UNLOADED, "a was evicted to stay under the budget");
    assert!(d.logs().contains("evicting"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_alone_over_the_memory_budget_fails_with_both_sizes() {
    // The file fits the budget; loaded, with its KV reservation and the default prefix cache
    // (512 MiB), it does not: refused for good, not as a retryable "busy".
    let config = tiny_config("preload_default = false\nmemory_budget = \"2MB\"", &[("a", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let e = generate(&mut g, tokens("a", vec![1, 2], 2)).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("memory_budget of 2000000 bytes") && e.message().contains("prefix cache"), "{e:?}");
    assert!(e.metadata().get("retry-after").is_none(), "{e:?}");
    assert_eq!(state(&d, "a").await.0, v1::ModelState::Failed as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_models_default_max_tokens_only_ever_shortens_an_answer() {
    let mut config = tiny_config("preload_default = false", &[("short", "llama-f32"), ("long", "llama-f32")]);
    config = config.replacen("[models.long]", "[models.short.defaults]\nmax_tokens = 3\n[models.long]", 1);
    config.push_str("[models.long.defaults]\nmax_tokens = 100000\n");
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let unset = |model: &str| {
        let mut r = tokens(model, vec![1, 2, 3], 1);
        r.max_tokens = None;
        r
    };
    assert_eq!(generate(&mut g, unset("short")).await.unwrap().tokens.len(), 3);
    // Past the 512-token context, the default stops at its end instead of refusing the request.
    let out = generate(&mut g, unset("long")).await.unwrap();
    assert_eq!(out.tokens.len(), 512 - 3, "{:?}", out.finished);
    assert_eq!(out.finished.unwrap().reason, v1::FinishReason::Length as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_of_one_model_share_one_engine() {
    // a and b name one file (b through a symlink), c the same file at another context length,
    // d another model; two engines at most.
    let file = tiny("llama-f32");
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("same-model");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let config = format!(
        "preload_default = false\nmax_loaded = 2\n\
         [models.a]\npath = \"{f}\"\n\
         [models.b]\npath = \"{l}\"\n[models.b.defaults]\nmax_tokens = 2\n\
         [models.c]\npath = \"{f}\"\ncontext_length = 256\n\
         [models.d]\npath = \"{q}\"\n",
        f = file.display(),
        l = link.display(),
        q = tiny("qwen2-f32").display(),
    );
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let engines = |s: v1::DaemonStatus| s.engines.into_iter().map(|e| e.names).collect::<Vec<_>>();
    let unset = |model: &str| {
        let mut r = tokens(model, vec![1, 2, 3], 4);
        r.max_tokens = None;
        r
    };

    let from_a = generate(&mut g, tokens("a", vec![5, 6, 7], 4)).await.unwrap();
    let from_b = generate(&mut g, tokens("b", vec![5, 6, 7], 4)).await.unwrap();
    assert_eq!(from_a.tokens, from_b.tokens, "one model, one greedy answer");
    assert_eq!(engines(d.status().await), vec![vec!["a".to_string(), "b".to_string()]], "b adopted a's engine");
    assert_eq!((state(&d, "a").await, state(&d, "b").await), ((LOADED, 1), (LOADED, 1)));
    // Each name keeps its own request defaults.
    assert_eq!(generate(&mut g, unset("b")).await.unwrap().tokens.len(), 2);
    assert!(generate(&mut g, unset("a")).await.unwrap().tokens.len() > 2);
    assert!(d.logs().contains("serving from an engine already loaded"), "{}", d.logs());
    // Errors name the model the client asked for, not the name the engine was loaded under.
    let e = generate(&mut g, tokens("b", vec![1; 600], 4)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("'b'") && !e.message().contains("'a'"), "{e:?}");

    // Another context length is another engine; a second one fits under max_loaded = 2.
    generate(&mut g, tokens("c", vec![1, 2], 2)).await.unwrap();
    assert_eq!(engines(d.status().await).len(), 2);
    // A third evicts the least recently used engine, with every name it serves.
    generate(&mut g, tokens("d", vec![1, 2], 2)).await.unwrap();
    assert_eq!(engines(d.status().await), vec![vec!["c".to_string()], vec!["d".to_string()]]);
    assert_eq!((state(&d, "a").await.0, state(&d, "b").await.0), (UNLOADED, UNLOADED));

    // First requests for both names at once: one load serves both, evicting one engine (c).
    let (mut ga, mut gb) = (g.clone(), g.clone());
    let ta = tokio::spawn(async move { generate(&mut ga, tokens("a", vec![1, 2], 2)).await });
    let tb = tokio::spawn(async move { generate(&mut gb, tokens("b", vec![1, 2], 2)).await });
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    let now = engines(d.status().await);
    assert!(now.contains(&vec!["a".to_string(), "b".to_string()]) && now.len() == 2, "{now:?}");

    // Unloading one name leaves the engine to the other.
    let mut m = d.models().await;
    let r = m.unload_model(v1::UnloadModelRequest { model: "a".into(), force: false }).await.unwrap().into_inner();
    assert!(r.was_loaded);
    assert_eq!((state(&d, "a").await.0, state(&d, "b").await.0), (UNLOADED, LOADED));
    assert!(engines(d.status().await).contains(&vec!["b".to_string()]));
    generate(&mut g, tokens("b", vec![1, 2], 2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_refused_for_itself_loads_and_evicts_nothing() {
    use v1::generate_request::Input;
    let config = tiny_config("preload_default = false\nmax_loaded = 1", &[("a", "llama-f32"), ("b", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let (mut g, mut m) = (d.generation().await, d.models().await);
    assert!(!generate(&mut g, tokens("a", vec![5, 6], 2)).await.unwrap().tokens.is_empty());
    let chat = Some(Input::Chat(v1::Chat {
        messages: vec![v1::Message { role: "user".into(), content: Some("hi".into()), ..Default::default() }],
        continue_final_message: false,
    }));
    let tool = v1::Tool { name: "f".into(), parameters_json: "{}".into(), ..Default::default() };
    let with = |f: &dyn Fn(&mut v1::GenerateRequest)| {
        let mut r = tokens("b", vec![5, 6], 2);
        f(&mut r);
        r
    };
    let cases: Vec<(&str, v1::GenerateRequest, &str)> = vec![
        ("no input", with(&|r| r.input = None), "input"),
        (
            "NaN temperature",
            with(&|r| r.sampling = Some(v1::SamplingParams { temperature: Some(f32::NAN), ..Default::default() })),
            "temperature",
        ),
        ("17 stop strings", with(&|r| r.stop = vec!["x".into(); 17]), "stop"),
        ("zero max_tokens", with(&|r| r.max_tokens = Some(0)), "max_tokens"),
        ("zero max_tokens_cap", with(&|r| (r.max_tokens, r.max_tokens_cap) = (None, Some(0))), "max_tokens_cap"),
        (
            "kwargs not an object",
            with(&|r| (r.input, r.chat_template_kwargs_json) = (chat.clone(), "[1]".into())),
            "chat_template_kwargs",
        ),
        (
            "a forced tool not declared",
            with(&|r| {
                r.input = chat.clone();
                r.tools = vec![tool.clone()];
                r.tool_choice = Some(v1::ToolChoice { function: "nope".into(), ..Default::default() });
            }),
            "tool_choice.function",
        ),
        (
            "an unknown tool choice mode",
            with(&|r| {
                r.input = chat.clone();
                r.tool_choice = Some(v1::ToolChoice { mode: 99, ..Default::default() });
            }),
            "tool_choice.mode",
        ),
        (
            "an empty grammar",
            with(&|r| r.constraint = Some(v1::Constraint { kind: Some(v1::constraint::Kind::Grammar(" ".into())) })),
            "constraint.grammar",
        ),
        // Grammars and schemas that do not compile, whatever the vocabulary.
        (
            "a grammar that does not parse",
            with(&|r| {
                r.constraint = Some(v1::Constraint { kind: Some(v1::constraint::Kind::Grammar("start: (".into())) })
            }),
            "constraint.grammar",
        ),
        (
            "a schema of an unknown type",
            with(&|r| {
                r.constraint =
                    Some(v1::Constraint { kind: Some(v1::constraint::Kind::JsonSchema(r#"{"type": "strin"}"#.into())) })
            }),
            "constraint.json_schema",
        ),
        (
            "a forced tool whose schema does not compile",
            with(&|r| {
                r.input = chat.clone();
                r.tools = vec![
                    tool.clone(),
                    v1::Tool {
                        name: "g".into(),
                        parameters_json: r##"{"$ref": "#/nope"}"##.into(),
                        ..Default::default()
                    },
                ];
                r.tool_choice = Some(v1::ToolChoice { function: "g".into(), ..Default::default() });
            }),
            "tools[1].function.parameters",
        ),
        (
            "continuing a user message",
            with(&|r| {
                r.input = Some(Input::Chat(v1::Chat {
                    messages: vec![v1::Message {
                        role: "user".into(),
                        content: Some("hi".into()),
                        ..Default::default()
                    }],
                    continue_final_message: true,
                }))
            }),
            "continue_final_message",
        ),
        (
            "a tool declared twice",
            with(&|r| (r.input, r.tools) = (chat.clone(), vec![tool.clone(), tool.clone()])),
            "tools[1].name",
        ),
    ];
    let refused = |name: &str, e: tonic::Status, param: &str| {
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {}", e.message());
        assert_eq!(
            e.metadata().get("zeta-param").and_then(|v| v.to_str().ok()),
            Some(param),
            "{name}: {}",
            e.message()
        );
    };
    for (name, req, param) in cases {
        refused(name, generate(&mut g, req).await.expect_err(name), param);
    }
    for (name, req, param) in [
        ("tokenize with no input", v1::TokenizeRequest { model: "b".into(), ..Default::default() }, "input"),
        (
            "tokenize forcing a tool not declared",
            v1::TokenizeRequest {
                model: "b".into(),
                input: Some(v1::tokenize_request::Input::Chat(v1::Chat {
                    messages: vec![v1::Message {
                        role: "user".into(),
                        content: Some("hi".into()),
                        ..Default::default()
                    }],
                    continue_final_message: false,
                })),
                tool_choice: Some(v1::ToolChoice { function: "nope".into(), ..Default::default() }),
                ..Default::default()
            },
            "tool_choice.function",
        ),
    ] {
        refused(name, m.tokenize(req).await.expect_err(name), param);
    }
    assert_eq!(state(&d, "a").await.0, LOADED, "a bad request for b must not evict a");
    assert_eq!(state(&d, "b").await, (UNLOADED, 0), "nor load b");
    assert!(!d.logs().contains("evicting"), "{}", d.logs());
}
