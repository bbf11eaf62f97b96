//! Compiled modules cached on disk, keyed by the module's bytes and the engine's settings, so a
//! restart deserialises (~20 µs) instead of compiling (~500 µs and up).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::LoadError;

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut digest = Sha256::new();
    digest.update(wasm);
    digest.update(settings.finish().to_le_bytes());
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The module for `wasm`, from the cache when a compatible compilation is there.
pub fn compile_cached(
    engine: &Engine,
    cache_dir: &Path,
    name: &str,
    wasm: &[u8],
) -> Result<Module, LoadError> {
    let path = cache_dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
    if path.is_file() {
        // SAFETY: the file was written by `Module::serialize` of this host (the key covers the
        // module bytes and the engine settings) into a directory only the supervisor writes.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => return Ok(module),
            Err(e) => {
                tracing::warn!(tool = name, error = %e, "compiled module cache entry unusable; recompiling")
            }
        }
    }
    let module = Module::new(engine, wasm).map_err(|e| LoadError::Invalid {
        name: name.to_owned(),
        detail: format!("{e:#}"),
    })?;
    if let Err(e) = store(&path, &module) {
        // The cache only saves time; a read-only or full disk must not stop the tool.
        tracing::warn!(tool = name, error = %e, "cannot cache the compiled module");
    }
    Ok(module)
}

fn store(path: &Path, module: &Module) -> std::io::Result<()> {
    let bytes = module
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
