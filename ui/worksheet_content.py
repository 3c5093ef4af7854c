"""The worksheet's prompts (../shared/WORKSHEET.md), each with a view preset and an instructor note.

A note that states numbers is computed from the shipped reports by ui/notes.py and ui/notes_clip.py (empty
here); the notes written here are those that state no measured figure.
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
    evidence: str = ""            # text on the landing view that shows its evidence is drawn (browser test)


PROMPTS = [
    Prompt("1.1", "Understanding diffusion", "Explain the forward diffusion process, using the visualisation of an "
           "image at growing noise levels.", "pages/forward_process.py", "forward", {"digit": 3, "t": 300},
           ""),
    Prompt("1.2", "Understanding diffusion", "Why add noise gradually instead of all at once? How does that affect "
           "learning?", "pages/forward_process.py", "forward", {"t": 500, "schedule": "linear"},
           ""),
    Prompt("1.3", "Understanding diffusion", "In the step-by-step view, at roughly what percentage can you first "
           "recognise the digit? Does it vary by digit?", "pages/denoising.py", "denoising",
           {"digit": 7, "seed": 2, "steps": 25},
           ""),
    Prompt("2.1", "Model architecture", "Why is a U-Net well suited to diffusion?", "pages/architecture.py", "arch",
           {"t": 300}, ""),
    Prompt("2.2", "Model architecture", "What are skip connections and why do they matter?", "pages/architecture.py",
           "arch", {"t": 100}, ""),
    Prompt("2.3", "Model architecture", "How is the model conditioned on a digit? How does the context mask work?",
           "pages/architecture.py", "arch", {"digit": 4},
           ""),
    Prompt("3.1", "Training analysis", "What does the loss value tell us about the model?", "pages/training.py",
           "training", {}, ""),
    Prompt("3.2", "Training analysis", "How did the quality of generated images change through training?",
           "pages/training.py", "training", {}, ""),
    Prompt("3.3", "Training analysis", "Why does a diffusion model need the time embedding?", "pages/architecture.py",
           "arch", {"t": 150, "told": 900}, ""),
    Prompt("4.1", "CLIP evaluation", "What do CLIP scores tell you about the generated images? Which got the highest "
           "and lowest?", "pages/clip_evaluation.py", "clip", {},
           ""),
    Prompt("4.2", "CLIP evaluation", "Hypothesis: why are some images easier or harder to generate convincingly?",
           "pages/clip_evaluation.py", "clip", {},
           ""),
    Prompt("4.3", "CLIP evaluation", "How could CLIP scores improve generation? Propose a technique.",
           "pages/clip_evaluation.py", "clip", {"compare": True},
           ""),
    Prompt("B3", "CLIP evaluation", "Generate 10 samples per digit, score with CLIP, keep the top 3. What patterns "
           "does CLIP call high quality?", "pages/clip_evaluation.py", "clip", {"keep": 3},
           ""),
    Prompt("5.1", "Practical applications", "How could this kind of model be useful in the real world?",
           "pages/applications.py", "apps", {},
           "The same trained denoiser, without retraining, fills in missing regions (inpainting), edits an "
           "existing image toward a target (SDEdit), adds detail to low-resolution inputs (ILVR upscaling) and "
           "interpolates: restoration, editing and data augmentation."),
    Prompt("5.2", "Practical applications", "What are the limitations of the current model?", "pages/denoising.py",
           "denoising", {"digit": 7, "seed": 2},
           ""),
    Prompt("5.3", "Practical applications", "If you continued the project, what three improvements would you make?",
           "pages/training.py", "training", {},
           "Argue from the runs table: width/depth vs time and judge accuracy (B2), the sampler speed/quality chart "
           "(fewer steps), and the memorisation check (more data or augmentation)."),
    Prompt("B4", "Bonus", "Style conditioning: generate several styles of the same digit (slanted, thick, thin). "
           "Document the approach and results.", "pages/applications.py", "apps", {"choice": "Style (B4)"},
           ""),
    Prompt("B2", "Bonus", "Modify the U-Net (more layers, wider channels) and train it. How do time and quality "
           "change?", "pages/training.py", "training", {},
           ""),
]


# What each "Show me" must land with (tests/test_browser.py opens every one on a fresh server and looks for it)
EVIDENCE = {
    "1.1": "the same digit and noise at 0 %", "1.2": "answers \"not a digit\" for",
    "1.3": "First % of denoising at which the judge reads", "2.1": "MFLOP per image forward",
    "2.2": "no-skip: digits 0…9", "2.3": "about 10 % of training images", "3.3": "the network assumes",
    "5.1": "judge reads", "5.2": "took", "B4": "Measured compliance of this model",
    "3.1": "Unweighted ε-MSE of", "3.2": "The judge's reading, computed now",
    "5.3": "judge %: the share of generated digits", "B2": "judge %: the share of generated digits",
    "4.1": "Rank correlation of CLIPScore with judge confidence", "4.2": "generated: ρ",
    "4.3": "Each technique fills the same 30 slots", "B3": "Green frame: kept",
}
PROMPTS = [Prompt(**{**p.__dict__, "evidence": EVIDENCE.get(p.number, p.evidence)}) for p in PROMPTS]
