# The small dataset of run.sh's end-to-end check (sourced by bundle.sh, which shards it, and by
# run.sh, which trains and embeds it): the demo config with 4 patients per class, every modality,
# so that the check runs the CLI's whole GPU path (images, clips and volumes).
GPU_DATA=(--config configs/demo.toml --set synth.patients_per_class=4 --set synth.samples_per_patient=2)
