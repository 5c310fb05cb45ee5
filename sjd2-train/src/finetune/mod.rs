//! SJD2 fine-tuning of any supported model: data preparation ([`data`]), next-clean-token
//! training with LoRA or full fine-tuning ([`train`]) and export in the family's own checkpoint
//! layout with the decoder settings beside it ([`mod@export`]); a quick SJD2 evaluation at
//! checkpoints ([`eval`]).

pub mod data;
pub mod eval;
pub mod export;
pub mod memory;
pub mod train;

pub use data::{
    DataSpec, Example, Manifest, PrepareOptions, PrepareProgress, load_prepared, prepare,
};
pub use eval::{QuickEval, decoder_config};
pub use export::{ExportReport, Sjd2Settings, export};
pub use train::{
    FinetuneOptions, FinetuneStep, Finetuner, LoraOptions, NoisePlan, load_trained,
    next_clean_token_loss,
};
