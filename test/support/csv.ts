import assert from 'node:assert/strict';

/**
 * Splits CSV text into records of fields, undoing RFC 4180 quoting (separator `,`), as a
 * spreadsheet reads it. The text must end with a newline (an export always does).
 */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else field += c;
  }
  assert.equal(field + record.join(''), '', 'the CSV ends with a newline');
  return records;
}
