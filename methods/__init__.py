"""The animation methods (UniAnimate-DiT, RealisDance-DiT, Wan2.2-Animate): each fills the DiT's extension points."""
