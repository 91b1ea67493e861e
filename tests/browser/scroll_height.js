// Scrolls the notebook to the top; returns how many pixels of cells lie below the visible area.
() => {
const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
       || document.querySelector('.jp-NotebookPanel .jp-Notebook');
if (!s) return 0;
s.scrollTop = 0;
const cells = s.querySelectorAll('.jp-Cell');
if (!cells.length) return 0;
const bottom = cells[cells.length - 1].getBoundingClientRect().bottom - s.getBoundingClientRect().top;
return Math.max(0, bottom - s.clientHeight); }
