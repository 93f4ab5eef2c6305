"""tinymem: the science behind tinymem-workflow.

A reproduction of *Mitigating Memorization in Language Models* (Sakarvadia et al., ICLR 2025,
arXiv 2410.02159): TinyMem data with noise and backdoor artifacts, TinyMem GPT-2 models, the
memorization metrics and the mitigations. The package never imports snakemake; every workflow
script is a thin call into it, and a notebook can import the same functions.
"""

__version__ = "0.1.0"
