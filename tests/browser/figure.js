// Everything that draws the figure(s) of widget k's slider j, as a string to compare before/after a move.
([k, j]) => {
  const o = document.querySelector(`[data-browsertest-widget="${k}"]`);
  if (!o) return null;
  const sl = o.querySelectorAll('.widget-slider')[j];
  const imgs = [...o.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
  const svgs = [...o.querySelectorAll('svg')].filter(s => !s.closest('.noUi-target, button, .lm-Widget.jp-ToolbarButtonComponent'))
                                             .map(s => s.outerHTML);
  const h = sl ? sl.querySelector('.noUi-handle') : null;
  const lab = sl ? sl.querySelector('.widget-label') : null;
  return {name: lab ? lab.textContent : null,fig: imgs.join('|') + '#' + svgs.join('|'), nfig: imgs.length + svgs.length,
          value: sl && sl.querySelector('.widget-readout') ? sl.querySelector('.widget-readout').textContent.trim()
                                                           : (h ? h.getAttribute('aria-valuenow') : null),
          aria: h ? h.getAttribute('aria-valuenow') : null,
          atMax: h ? parseFloat(h.getAttribute('aria-valuenow')) >= parseFloat(h.getAttribute('aria-valuemax')) : false};
}
