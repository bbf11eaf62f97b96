//! Weights on disk: Q4_1 tensors are requantised to Q8_0 once and cached next to the database,
//! because candle 0.11 has no SIMD kernel for Q4_1 (measured:
//! 19 → 60 tokens/s on one core).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};

/// A GGUF file ready for `ModelWeights::from_gguf`: its path and parsed header.
pub struct Prepared {
    /// The file the tensors are read from (the cache when requantised).
    pub path: PathBuf,
    /// Its metadata and tensor index.
    pub content: Content,
}

/// Q8_0 blocks hold 32 values; a row whose length is not a multiple stays as it is.
const Q8_0_BLOCK: usize = 32;

fn read_content(path: &Path) -> candle_core::Result<Content> {
    let mut file = File::open(path)?;
    Content::read(&mut file).map_err(|e| e.with_path(path))
}

fn convertible(info: &gguf_file::TensorInfo) -> bool {
    info.ggml_dtype == GgmlDType::Q4_1
        && info
            .shape
            .dims()
            .last()
            .is_some_and(|d| d % Q8_0_BLOCK == 0)
}

/// Return the file to load: `gguf` itself, or its Q8_0 copy in `cache_dir`, made if missing or
/// older than the source.
pub fn prepare(gguf: &Path, cache_dir: &Path) -> candle_core::Result<Prepared> {
    let content = read_content(gguf)?;
    if !content.tensor_infos.values().any(convertible) {
        return Ok(Prepared {
            path: gguf.to_owned(),
            content,
        });
    }
    let stem = gguf
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let cached = cache_dir.join(format!("{stem}.q8_0.gguf"));
    let fresh = |p: &Path| -> Option<bool> {
        let source = std::fs::metadata(gguf).ok()?.modified().ok()?;
        let copy = std::fs::metadata(p).ok()?.modified().ok()?;
        Some(copy >= source)
    };
    if fresh(&cached) == Some(true)
        && let Ok(content) = read_content(&cached)
    {
        return Ok(Prepared {
            path: cached,
            content,
        });
    }
    let started = std::time::Instant::now();
    requantize(gguf, &content, &cached)?;
    tracing::info!(source = %gguf.display(), cache = %cached.display(), ms = started.elapsed().as_millis() as u64, "requantised Q4_1 weights to Q8_0");
    Ok(Prepared {
        content: read_content(&cached)?,
        path: cached,
    })
}

fn requantize(gguf: &Path, content: &Content, target: &Path) -> candle_core::Result<()> {
    let mut source = File::open(gguf)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(&mut source, name, &Device::Cpu)?;
        let tensor = if content.tensor_infos.get(name).is_some_and(convertible) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    // The writer aligns to 32 bytes itself; a copied alignment key could disagree with it.
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written aside and renamed, so a crash mid-way never leaves a truncated cache behind.
    let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut out = BufWriter::new(File::create(&tmp)?);
        gguf_file::write(&mut out, &metadata, &refs)?;
        std::io::Write::flush(&mut out)?;
    }
    std::fs::rename(&tmp, target)?;
    Ok(())
}
