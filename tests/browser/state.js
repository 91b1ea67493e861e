// Reads everything the browser checks need from the DOM of the open notebook (tests/browser/page.py).
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')
             || document.querySelector('.jp-NotebookPanel');
  if (!panel) return null;
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  const code = cells.filter(c => c.classList.contains('jp-CodeCell'));
  const prompts = code.map(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
  const outs = [...panel.querySelectorAll('.jp-OutputArea-output')];
  const errors = [];
  const fallbacks = [];
  outs.forEach(o => {
    const mime = o.getAttribute('data-mime-type') || '';
    const text = (o.innerText || '').trim();
    const cell = o.closest('.jp-CodeCell');
    const idx = code.indexOf(cell);
    const isTrace = /Traceback \(most recent call last\)/.test(text)
                 || /^\s*\w*(Error|Exception|Interrupt)\b(:|$)/m.test(text);
    if ((mime === 'application/vnd.jupyter.stderr' && isTrace) ||
        (o.querySelector('.jp-RenderedText') && /Traceback \(most recent call last\)/.test(text))) {
      errors.push({cell: idx, prompt: prompts[idx] || '', text: text.slice(0, 1500)});
    }
    // widget shown as its text repr: no widget manager / renderer in the front end
    if (mime === 'text/plain' &&
        /^(interactive|VBox|HBox|Box|GridBox|Tab|Accordion|Output|Play|Button|Dropdown|\w*Slider|\w*Text)\(/.test(text)) {
      fallbacks.push({cell: idx, text: text.slice(0, 300)});
    }
  });
  // Top-level outputs of the widget renderer (it sets no data-mime-type): they hold a widget view,
  // or -- when rendering failed -- carry the class jupyter-widgets themselves with an error text,
  // or still say "Loading widget...".
  const topOuts = [...panel.querySelectorAll('.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
  const widgetOuts = topOuts.filter(o => o.classList.contains('jupyter-widgets')
                                      || o.querySelector('.jupyter-widgets')
                                      || /^(Loading widget|Error displaying widget)/.test((o.textContent || '').trim()));
  const widgets = widgetOuts.map((o, k) => {
    o.setAttribute('data-browsertest-widget', String(k));
    const cell = o.closest('.jp-CodeCell');
    return {
      id: k,
      cell: code.indexOf(cell),
      text: (o.innerText || '').trim().slice(0, 200),
      hasView: !!o.querySelector('.jupyter-widgets')
               && !/^(Error displaying widget|Loading widget)/.test((o.textContent || '').trim()),
      sliders: o.querySelectorAll('.widget-slider').length,
    };
  });
  const bodyText = panel.innerText || '';
  return {
    status: ind ? ind.getAttribute('data-status') : null,
    nCode: code.length,
    prompts,
    errors,
    fallbacks,
    widgets,
    nSliders: panel.querySelectorAll('.widget-slider').length,
    modelNotFound: (bodyText.match(/Error displaying widget[^\n]*/g) || []),
    loadingWidget: (bodyText.match(/Loading widget\.\.\./g) || []).length,
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => (d.innerText || '').trim().slice(0, 300)),
  };
}
