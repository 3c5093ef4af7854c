"""The worksheet's prompts (../shared/WORKSHEET.md), each with a view preset and an instructor note.

A note that states numbers is computed from the shipped reports by ui/notes.py (which the Worksheet page shows
in place of the text here); the text here is the fallback, and for prompts without numbers, the note.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prompt:
    number: str
    section: str
    text: str
    page: str                     # page file, for st.switch_page
    namespace: str                # session-state namespace of that page
    preset: dict = field(default_factory=dict)
    note: str = ""


PROMPTS = [
    Prompt("1.1", "Understanding diffusion", "Explain the forward diffusion process, using the visualisation of an "
           "image at growing noise levels.", "pages/forward_process.py", "forward", {"digit": 3, "t": 300},
           "x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε is a closed form: any noise level can be reached in one draw. The strip "
           "shows the signal coefficient √ᾱ_t falling from 1 to ≈0 while the histogram of x_t approaches N(0, 1): "
           "at 100 % the image carries no information about x₀."),
    Prompt("1.2", "Understanding diffusion", "Why add noise gradually instead of all at once? How does that affect "
           "learning?", "pages/forward_process.py", "forward", {"t": 500, "schedule": "linear"},
           "Each reverse step then only has to undo a little noise, which a network can learn (the posterior of one "
           "small step is nearly Gaussian). With T = 1 (the `one-step` preset) the model must map pure noise to a "
           "digit in one jump and produces blurry averages. The loss-per-bucket chart on the Training page shows "
           "the low-noise buckets are easy (tiny MSE) and the high-noise ones hard."),
    Prompt("1.3", "Understanding diffusion", "In the step-by-step view, at roughly what percentage can you first "
           "recognise the digit? Does it vary by digit?", "pages/denoising.py", "denoising",
           {"digit": 7, "seed": 2, "steps": 25},
           "Turn on the recognisability measurement: the judge reads x̂₀ correctly long before x_t looks clean, and "
           "the first-recognised percentage differs per class (simple shapes like 1 and 0 earlier than 5 or 8)."),
    Prompt("2.1", "Model architecture", "Why is a U-Net well suited to diffusion?", "pages/architecture.py", "arch",
           {"t": 300}, "Downsampling gives every output pixel a view of the whole 28×28 digit at low cost (7×7 "
           "levels are 16× cheaper per channel), while the decoder restores full resolution. The output has the "
           "input's shape, as ε̂ must. Compare with the plain-CNN ablation: about the same FLOPs (232 MFLOP per "
           "image, the U-Net 211) spent at full resolution reach 73.8 % judge accuracy and 10× the real Fréchet "
           "distance (default: 99.4 %, 1.92×)."),
    Prompt("2.2", "Model architecture", "What are skip connections and why do they matter?", "pages/architecture.py",
           "arch", {"t": 100}, "Skips concatenate each encoder level's features to the decoder at the same "
                               "resolution, so fine detail lost by downsampling is available when predicting noise "
                               "pixel by pixel. The no-skip ablation (same budget) ends at a higher loss (0.029 vs 0.020) with "
                               "blurry digits: 58.6 % judge accuracy and 26× the real Fréchet distance."),
    Prompt("2.3", "Model architecture", "How is the model conditioned on a digit? How does the context mask work?",
           "pages/architecture.py", "arch", {"digit": 4},
           "The class embedding is added to the time embedding and modulates every residual block (scale and "
           "shift). During training ~10 % of labels are replaced by the null class ∅, so the same network learns "
           "ε(x_t, ∅); guidance extrapolates (1 + w)·ε(x_t, y) − w·ε(x_t, ∅). The digit's identity is "
           "settled at high noise, so the shipped model guides only while t/T ≥ 0.6 (Denoising page, 'guide "
           "while t/T ≥'): the other steps need one forward instead of two."),
    Prompt("3.1", "Training analysis", "What does the loss value tell us about the model?", "pages/training.py",
           "training", {}, "It measures noise-prediction error averaged over timesteps; it falls fast then "
                           "plateaus, dominated by the hard high-noise buckets, while judge accuracy keeps "
                           "improving. Loss and quality are related but not the same."),
    Prompt("3.2", "Training analysis", "How did the quality of generated images change through training?",
           "pages/training.py", "training", {}, "Scrub the fixed-seed film: blobs, then strokes, then digits "
                                                "of the right class; judge accuracy rises with it."),
    Prompt("3.3", "Training analysis", "Why does a diffusion model need the time embedding?", "pages/architecture.py",
           "arch", {"t": 150, "told": 900}, "The same x_t can be a slightly noisy digit or a very noisy one; t "
                                            "tells the network how much noise to remove. Told a wrong t, its x̂₀ "
                                            "is clearly worse (see the MSE under each image). The no-time "
                                            "ablation (same budget) trains to almost the default's loss (0.021 vs "
                                            "0.020) yet its samples fall apart (68.8 % judge accuracy, 750× the "
                                            "real Fréchet distance): a low loss is not good sampling."),
    Prompt("4.1", "CLIP evaluation", "What do CLIP scores tell you about the generated images? Which got the highest "
           "and lowest?", "pages/clip_evaluation.py", "clip", {},
           "CLIPScore measures how well an image matches its caption in CLIP's embedding space. The ranked rows show "
           "the best and worst of each class; the worst are usually malformed or ambiguous strokes, and they are "
           "the ones the judge is least confident about (see ρ). Compare with the real-digit baseline."),
    Prompt("4.2", "CLIP evaluation", "Hypothesis: why are some images easier or harder to generate convincingly?",
           "pages/clip_evaluation.py", "clip", {},
           "Classes with many writing styles (2, 4, 7 with or without a bar) and digits sharing strokes with others "
           "(3/5/8, 4/9) score lower; the pattern charts show how thickness and slant relate to the score, and "
           "higher guidance raises scores by making digits more typical."),
    Prompt("4.3", "CLIP evaluation", "How could CLIP scores improve generation? Propose a technique.",
           "pages/clip_evaluation.py", "clip", {"compare": True},
           "Rerank (generate N, keep the best), reject below a threshold (pay in extra samples), or guide sampling "
           "with the gradient of CLIP similarity through x̂₀. The comparison table shows each one's effect on "
           "judge accuracy, diversity and cost."),
    Prompt("B3", "CLIP evaluation", "Generate 10 samples per digit, score with CLIP, keep the top 3. What patterns "
           "does CLIP call high quality?", "pages/clip_evaluation.py", "clip", {"keep": 3},
           "Green frames are kept. Kept digits are on average more confident for the judge and closer to the "
           "typical thickness and slant of the class (see the kept vs rejected table)."),
    Prompt("5.1", "Practical applications", "How could this kind of model be useful in the real world?",
           "pages/applications.py", "apps", {},
           "The same trained denoiser, without retraining, fills in missing regions (inpainting), edits an "
           "existing image toward a target (SDEdit), adds detail to low-resolution inputs (ILVR upscaling) and "
           "interpolates: restoration, editing and data augmentation."),
    Prompt("5.2", "Practical applications", "What are the limitations of the current model?", "pages/denoising.py",
           "denoising", {"digit": 7, "seed": 2},
           "DDPM needs T network calls per image (compare the time with DDIM-25); small data (4,000 digits) "
           "risks copying (see the memorisation check); only 28×28 grey digits."),
    Prompt("5.3", "Practical applications", "If you continued the project, what three improvements would you make?",
           "pages/training.py", "training", {},
           "Argue from the runs table: width/depth vs time and judge accuracy (B2), the sampler speed/quality chart "
           "(fewer steps), and the memorisation check (more data or augmentation)."),
    Prompt("B4", "Bonus", "Style conditioning: generate several styles of the same digit (slanted, thick, thin). "
           "Document the approach and results.", "pages/applications.py", "apps", {},
           "Open the Style tab: the model was trained with each digit's measured thickness and slant as extra "
           "conditions; the grid asks for styles and shows what was measured on the outputs."),
    Prompt("B2", "Bonus", "Modify the U-Net (more layers, wider channels) and train it. How do time and quality "
           "change?", "pages/training.py", "training", {},
           "Train the `wide` and `deep` presets with the default's steps; the runs table lists parameters, "
           "MFLOP per image, images/s, wall time, final loss and judge accuracy side by side."),
]
